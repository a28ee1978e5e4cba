//! The PROXY protocol (HAProxy's; v1 text, v2 binary): what a layer-4 load
//! balancer (HAProxy in TCP mode, AWS NLB, ...) sends ahead of the client's
//! bytes to say whom it is forwarding. Parsing is the `ppp` crate's; this
//! says, for the bytes seen so far, whether a header is complete, how long
//! it is (so the caller consumes exactly it) and whom it names.

use ppp::{HeaderResult, PartialResult, v1, v2};
use std::net::SocketAddr;

/// A v1 header is at most 107 bytes; a v2 one 16 and its addresses and
/// TLVs, which balancers keep small (an AWS endpoint id, a TLS note).
pub const MAX_HEADER: usize = 4096;

/// Why the bytes seen are not a PROXY header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no PROXY protocol header (is the balancer set to send one?): {0}")]
    Invalid(String),
    #[error("a PROXY header of over {MAX_HEADER} bytes")]
    TooLong,
}

/// A complete header: its length in bytes, and the client's address, or
/// `None` when the proxy speaks for itself (a v2 `LOCAL` health check, a
/// v1 `UNKNOWN`, or an address family other than TCP over IP).
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub source: Option<SocketAddr>,
}

/// What `seen` (the first bytes of the connection) holds: `None` while the
/// header is incomplete (read more); a header never longer than `seen`.
pub fn parse(seen: &[u8]) -> Result<Option<Header>, ProxyError> {
    let parsed = HeaderResult::parse(seen);
    if parsed.is_incomplete() {
        return if seen.len() >= MAX_HEADER {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    }
    let (len, source) = match parsed {
        HeaderResult::V1(Ok(header)) => (header.header.len(), v1_source(header.addresses)),
        HeaderResult::V2(Ok(header)) => (header.len(), v2_source(&header)),
        HeaderResult::V1(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
    };
    if len > seen.len() || len > MAX_HEADER {
        return Err(ProxyError::Invalid(format!(
            "a header of {len} bytes in {} seen",
            seen.len()
        )));
    }
    Ok(Some(Header { len, source }))
}

fn v1_source(addresses: v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &v2::Header) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
        v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}
