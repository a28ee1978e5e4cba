//! The PROXY protocol (HAProxy's; v1 text, v2 binary): what a layer-4 load
//! balancer (HAProxy in TCP mode, AWS NLB, ...) sends ahead of the client's
//! bytes to say whom it is forwarding. It is the only way to learn the
//! client when TLS is ours: the balancer cannot add an HTTP header to
//! bytes it cannot read.
//!
//! Read only from `--trusted-proxy` peers, and required of them
//! (`--proxy-protocol`), as HAProxy's `accept-proxy` and nginx's
//! `proxy_protocol` listeners do: anyone else could name any client.
//! What the bytes mean is `wshost_proto::proxy` (the `ppp` crate's
//! parser); this reads exactly the header's bytes off the socket, so what
//! follows (a TLS handshake, a request) is untouched.

use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wshost_proto::proxy::{self, MAX_HEADER, ProxyError};

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the proxy closed before its PROXY header was complete")]
    Closed,
    #[error(transparent)]
    Header(#[from] ProxyError),
    #[error("no complete PROXY header within the handshake timeout")]
    TimedOut,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read the PROXY header at the start of `tcp`: the client's address, or
/// `None` when the proxy speaks for itself (see [`proxy::Header`]).
pub async fn read_source(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut taken = Vec::new();
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        // Peek, so that only the header is consumed; what was peeked of a
        // header still incomplete is consumed, so the next peek waits for more.
        let n = tcp.peek(&mut peeked).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let seen = [&taken[..], &peeked[..n]].concat();
        let Some(header) = proxy::parse(&seen)? else {
            tcp.read_exact(&mut peeked[..n]).await?;
            taken.extend_from_slice(&peeked[..n]);
            continue;
        };
        // What is not taken yet of the header (`parse` keeps it within
        // `seen`; a prefix taken while incomplete is never past its end).
        let rest = header.len.checked_sub(taken.len()).ok_or_else(|| {
            ProxyError::Invalid("the header ended inside bytes already read".into())
        })?;
        tcp.read_exact(&mut peeked[..rest]).await?;
        return Ok(header.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// What `read_source` makes of `chunks` sent apart, and what it left.
    async fn read_from(chunks: &[&[u8]]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let sender = tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            client.shutdown().await.unwrap();
        });
        let source = read_source(&mut server).await.map_err(|e| e.to_string());
        sender.await.unwrap();
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest).await;
        (source, rest)
    }

    fn v2_tcp4(src: [u8; 4], sport: u16, local: bool) -> Vec<u8> {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.push(if local { 0x20 } else { 0x21 });
        header.push(0x11); // TCP over IPv4
        header.extend_from_slice(&12u16.to_be_bytes());
        header.extend_from_slice(&src);
        header.extend_from_slice(&[10, 0, 0, 1]);
        header.extend_from_slice(&sport.to_be_bytes());
        header.extend_from_slice(&443u16.to_be_bytes());
        header
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_what_follows() {
        let (source, rest) =
            read_from(&[b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\nGET /"]).await;
        assert_eq!(source, Ok(Some("203.0.113.7:51000".parse().unwrap())));
        assert_eq!(rest, b"GET /");
        let (source, _) = read_from(&[b"PROXY TCP6 2001:db8::7 ::1 51000 80\r\n"]).await;
        assert_eq!(source, Ok(Some("[2001:db8::7]:51000".parse().unwrap())));
        let (source, rest) = read_from(&[b"PROXY UNKNOWN\r\nx"]).await;
        assert_eq!((source, rest), (Ok(None), b"x".to_vec()));
    }

    #[tokio::test]
    async fn v2_names_the_client_unless_local_and_may_come_in_pieces() {
        let mut bytes = v2_tcp4([203, 0, 113, 8], 4711, false);
        bytes.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello begins
        let (head, tail) = bytes.split_at(7);
        let (source, rest) = read_from(&[head, tail]).await;
        assert_eq!(source, Ok(Some("203.0.113.8:4711".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01");
        let (source, _) = read_from(&[&v2_tcp4([1, 2, 3, 4], 1, true)]).await;
        assert_eq!(source, Ok(None));
    }

    #[tokio::test]
    async fn anything_else_is_refused_with_the_reason() {
        let (source, _) = read_from(&[b"GET / HTTP/1.1\r\n\r\n"]).await;
        assert!(source.unwrap_err().contains("no PROXY protocol header"));
        let (source, _) = read_from(&[b"PROXY TCP4 203.0.113.7"]).await;
        assert!(source.unwrap_err().contains("closed before"));
        let mut endless = v2_tcp4([1, 2, 3, 4], 1, false);
        endless[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        endless.resize(5000, 0);
        let (source, _) = read_from(&[&endless]).await;
        assert!(source.unwrap_err().contains("over 4096 bytes"));
    }
}
