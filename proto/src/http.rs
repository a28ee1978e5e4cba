//! The HTTP/1.1 side of a connection: reading the request head, checking a
//! WebSocket handshake, writing plain responses.
//!
//! wshost answers one request per TCP connection (`connection: close`); a
//! request body is never read.

use std::time::Duration;

/// Most header lines accepted in a request head.
pub const MAX_HEADERS: usize = 64;

/// A request head as received, before any handler has seen it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names, in the order sent.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.`minor`.
    pub minor_version: u8,
}

impl RequestHead {
    /// The first value of header `name` (give it lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// The values of every header `name`, in the order sent.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl DoubleEndedIterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` was sent.
    fn count(&self, name: &str) -> usize {
        self.headers_named(name).count()
    }

    /// The request asks for a WebSocket (whether or not it is a valid handshake).
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }

    /// True when header `name` holds `token` in its comma-separated list.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why no request head could be read; each maps to the status sent back.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the client sent no complete request head within {0:?}")]
    Timeout(Duration),
    #[error("the client closed the connection before a complete request head")]
    Eof,
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

impl HeadError {
    /// The response status for this error, when the client is still there to get one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::Timeout(_) => Some(408),
            HeadError::TooLarge(_) | HeadError::TooManyHeaders => Some(431),
            HeadError::Malformed(_) => Some(400),
            HeadError::Eof | HeadError::Io(_) => None,
        }
    }
}

/// Parse a request head at the start of `buf`: `None` while it is
/// incomplete; else the head and how many bytes it took (what follows is
/// the start of the client's first frames).
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = req
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HeadError::Malformed(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect::<Result<_, HeadError>>()?;
    let head = RequestHead {
        method: req.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        minor_version: req.version.unwrap_or(0),
    };
    Ok(Some((head, consumed)))
}

/// Why a request is not a WebSocket handshake this server accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("a WebSocket handshake must use GET, not {0}")]
    Method(String),
    #[error("a WebSocket handshake must use HTTP/1.1")]
    HttpVersion,
    #[error("missing `Host` header")]
    NoHost,
    #[error("header {0} is sent more than once")]
    Duplicate(&'static str),
    #[error("missing `Upgrade: websocket` header")]
    NoUpgradeHeader,
    #[error("missing `Connection: Upgrade` header")]
    NoConnectionUpgrade,
    #[error("unsupported Sec-WebSocket-Version {0:?}; this server speaks 13")]
    Version(String),
    #[error("missing or malformed Sec-WebSocket-Key header (16 bytes in base64)")]
    Key,
    /// A body (`Content-Length` other than 0, or `Transfer-Encoding`): the
    /// bytes after the head would be taken for WebSocket frames, where
    /// HTTP switches protocols after the body (RFC 9110 §7.8).
    #[error("a WebSocket handshake has no body")]
    Body,
}

impl HandshakeError {
    /// The response sent for this error: 426 names the supported version.
    pub fn response(&self) -> Vec<u8> {
        let reason = format!("{self}\n");
        match self {
            HandshakeError::Version(_) => response(
                426,
                &[("sec-websocket-version".into(), "13".into())],
                reason.as_bytes(),
                false,
            ),
            _ => response(400, &[], reason.as_bytes(), false),
        }
    }
}

/// Check `head` is a valid RFC 6455 handshake; returns the `Sec-WebSocket-Accept` value.
pub fn accept_key(head: &RequestHead) -> Result<String, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::Method(head.method.clone()));
    }
    if head.minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if head.header("host").is_none() {
        return Err(HandshakeError::NoHost);
    }
    let body = head
        .headers_named("content-length")
        .any(|n| n.trim() != "0")
        || head.header("transfer-encoding").is_some();
    if body {
        return Err(HandshakeError::Body);
    }
    for name in ["sec-websocket-key", "sec-websocket-version"] {
        if head.count(name) > 1 {
            return Err(HandshakeError::Duplicate(name));
        }
    }
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeHeader);
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    match head.header("sec-websocket-version") {
        Some("13") => {}
        other => return Err(HandshakeError::Version(other.unwrap_or("").to_string())),
    }
    let key = head
        .header("sec-websocket-key")
        .ok_or(HandshakeError::Key)?;
    // The key is 16 random bytes in base64 (RFC 6455 §4.1).
    let decoded = data_encoding::BASE64.decode(key.as_bytes());
    if decoded.map_or(true, |bytes| bytes.len() != 16) {
        return Err(HandshakeError::Key);
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` response for the accepted handshake `head`
/// (its `Sec-WebSocket-Accept` value `accept`), with the subprotocol chosen
/// and extra headers (both checked by the caller) and, when `deflate` is
/// enabled and the client offers it, permessage-deflate; returns the
/// response and what was agreed of deflate.
pub fn switching_protocols(
    (head, accept): (&RequestHead, &str),
    protocol: Option<&str>,
    headers: &[(String, String)],
    deflate: bool,
) -> (Vec<u8>, Option<crate::deflate::Agreed>) {
    let agreed = deflate
        .then(|| crate::deflate::negotiate(extension_offers(head)))
        .flatten();
    let extensions = agreed.map(|(agreed, offered_bits)| agreed.response(offered_bits));
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    if let Some(protocol) = protocol {
        out.push_str(&format!("sec-websocket-protocol: {protocol}\r\n"));
    }
    if let Some(extensions) = &extensions {
        out.push_str(&format!("sec-websocket-extensions: {extensions}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    (out.into_bytes(), agreed.map(|(agreed, _)| agreed))
}

/// The values of the client's `sec-websocket-extensions` headers.
fn extension_offers(head: &RequestHead) -> impl Iterator<Item = &str> {
    head.headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-extensions")
        .map(|(_, v)| v.as_str())
}

/// The subprotocols the client offered (`sec-websocket-protocol`), in order.
pub fn offered_protocols(head: &RequestHead) -> impl Iterator<Item = &str> {
    head.headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// Check a guest's choices for the 101 response: a subprotocol the client
/// offered, headers that are valid and not the handshake's own.
pub fn check_upgrade(
    head: &RequestHead,
    protocol: Option<&str>,
    headers: &[(String, String)],
) -> Result<(), String> {
    if let Some(protocol) = protocol
        && !offered_protocols(head).any(|p| p == protocol)
    {
        return Err(format!(
            "subprotocol {protocol:?} was not offered by the client"
        ));
    }
    for (name, value) in headers {
        check_header(name, value)?;
        if name.to_ascii_lowercase().starts_with("sec-websocket-")
            || ["upgrade", "connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        {
            return Err(format!("header {name} is set by the host"));
        }
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    tungstenite::http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    tungstenite::http::HeaderValue::from_str(value)
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok(())
}

/// A complete `connection: close` response. `content-length` is computed; the
/// body is left out when `head_only` (a HEAD request).
pub fn response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let reason = tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        && !body.is_empty()
    {
        out.push_str("content-type: text/plain; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Check a handler's response before it is written; returns why it cannot be sent.
pub fn check_response(status: u16, headers: &[(String, String)]) -> Result<(), String> {
    if !(200..=599).contains(&status) {
        return Err(format!(
            "status {status} is not a final response status (200-599)"
        ));
    }
    for (name, value) in headers {
        check_header(name, value)?;
        if ["content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            return Err(format!("header {name} is set by the host"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> RequestHead {
        parse_head(raw.as_bytes()).unwrap().unwrap().0
    }

    const HANDSHAKE: &str = "GET /ws?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn parses_path_query_and_lowercases_headers() {
        let h = head(HANDSHAKE);
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/ws", "room=1"));
        assert_eq!(h.header("sec-websocket-version"), Some("13"));
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_head(b"\x00\x01 nonsense\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(&head(HANDSHAKE)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_errors() {
        let plain = head("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(accept_key(&plain), Err(HandshakeError::NoUpgradeHeader));
        let v8 = head(&HANDSHAKE.replace("Version: 13", "Version: 8"));
        assert_eq!(accept_key(&v8), Err(HandshakeError::Version("8".into())));
        assert!(
            String::from_utf8(HandshakeError::Version("8".into()).response())
                .unwrap()
                .starts_with("HTTP/1.1 426")
        );
        let nokey = head(&HANDSHAKE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""));
        assert_eq!(accept_key(&nokey), Err(HandshakeError::Key));
        // 24 characters ending in `==`, but not base64 of 16 bytes.
        let bad_key =
            head(&HANDSHAKE.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="));
        assert_eq!(accept_key(&bad_key), Err(HandshakeError::Key));
        let short_key = head(&HANDSHAKE.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="));
        assert_eq!(accept_key(&short_key), Err(HandshakeError::Key));
        let http10 = head(&HANDSHAKE.replace("HTTP/1.1", "HTTP/1.0"));
        assert_eq!(accept_key(&http10), Err(HandshakeError::HttpVersion));
        let no_host = head(&HANDSHAKE.replace("Host: x\r\n", ""));
        assert_eq!(accept_key(&no_host), Err(HandshakeError::NoHost));
        let twice = head(&HANDSHAKE.replace("\r\n\r\n", "\r\nSec-WebSocket-Version: 13\r\n\r\n"));
        assert_eq!(
            accept_key(&twice),
            Err(HandshakeError::Duplicate("sec-websocket-version"))
        );
        for body in ["Content-Length: 5", "Transfer-Encoding: chunked"] {
            let with_body = head(&HANDSHAKE.replace("\r\n\r\n", &format!("\r\n{body}\r\n\r\n")));
            assert_eq!(accept_key(&with_body), Err(HandshakeError::Body), "{body}");
        }
        let empty = head(&HANDSHAKE.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"));
        assert!(accept_key(&empty).is_ok());
    }

    #[test]
    fn a_subprotocol_must_have_been_offered() {
        let offered = head(&HANDSHAKE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: graphql-ws, chat\r\n\r\n",
        ));
        let protocols: Vec<_> = offered_protocols(&offered).collect();
        assert_eq!(protocols, ["graphql-ws", "chat"]);
        assert!(check_upgrade(&offered, Some("chat"), &[]).is_ok());
        assert!(check_upgrade(&offered, Some("mqtt"), &[]).is_err());
        assert!(check_upgrade(&head(HANDSHAKE), Some("chat"), &[]).is_err());
        let cookie = [("set-cookie".to_string(), "a=1".to_string())];
        assert!(check_upgrade(&offered, None, &cookie).is_ok());
        let own = [("Sec-WebSocket-Accept".to_string(), "x".to_string())];
        assert!(check_upgrade(&offered, None, &own).is_err());
        let injected = [("x".to_string(), "a\r\nb: c".to_string())];
        assert!(check_upgrade(&offered, None, &injected).is_err());
    }

    #[test]
    fn response_rejects_header_injection() {
        assert!(check_response(200, &[("x".into(), "a\r\nb: c".into())]).is_err());
        assert!(check_response(101, &[]).is_err());
        assert!(check_response(200, &[("content-type".into(), "text/html".into())]).is_ok());
    }
}
