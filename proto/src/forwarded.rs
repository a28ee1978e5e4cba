//! Who a request comes from: its TCP peer, or — when that peer is a proxy
//! the operator trusts (`--trusted-proxy`) — the address the proxies name
//! in `X-Forwarded-For`.
//!
//! The host keys its own decisions about a client on it (the coro world's
//! quarantine, its log lines): behind a load balancer every peer is the
//! balancer, and one client that crashes its instance would get everyone
//! refused. Guests still get the peer's socket address as `remote-addr`
//! (the released meaning) and the header itself.
//!
//! The header is read from the right, as nginx's `real_ip_recursive` and
//! Go's `realip` do: each trusted hop appends the address it was reached
//! from, so the rightmost address that is not a trusted proxy is the first
//! one no trusted hop can have been lied to about. Anything left of it is
//! the client's own say and is ignored.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The header proxies append the address they were reached from to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The networks whose requests may name their client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// A network as the operator writes it: `10.0.0.0/8`, `fd00::/8`, or
    /// one address (`127.0.0.1`, `::1`).
    pub fn parse(net: &str) -> Result<IpNet, String> {
        let net = net.trim();
        net.parse::<IpNet>()
            .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                format!("{net:?} is not an address or network: give e.g. 10.0.0.0/8 or 127.0.0.1")
            })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` whose `X-Forwarded-For` headers
    /// hold `forwarded_for` (each header's value, in the request's order).
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let entries = forwarded_for.rev().flat_map(|value| value.rsplit(','));
        for entry in entries.map(str::trim).filter(|e| !e.is_empty()) {
            // A hop that wrote no address (`unknown`, an obfuscated name):
            // what it says of those before it cannot be checked.
            let Some(hop) = address(entry) else {
                return client;
            };
            client = hop;
            if !self.trusts(hop) {
                return hop;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: an address, with a port or not (`[v6]`
/// in brackets when it has one).
fn address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            let bracketed = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'));
            bracketed.ok_or(()).and_then(|e| e.parse().map_err(|_| ()))
        })
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter()
                .map(|n| TrustedProxies::parse(n).unwrap())
                .collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let proxies = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["203.0.113.9"].into_iter()),
            ip("192.0.2.1")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), ["203.0.113.9"].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_and_what_it_claimed_is_ignored() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        // The client sent "6.6.6.6" itself; the edge proxy appended its address.
        let header = ["6.6.6.6, 203.0.113.7, 10.1.2.3"];
        assert_eq!(
            proxies.client(ip("127.0.0.1"), header.into_iter()),
            ip("203.0.113.7")
        );
        // Several header lines read as one list, in order.
        let lines = ["6.6.6.6", "203.0.113.7", "10.1.2.3"];
        assert_eq!(
            proxies.client(ip("127.0.0.1"), lines.into_iter()),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let proxies = trusted(&["127.0.0.1"]);
        assert_eq!(
            proxies.client(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client(ip("127.0.0.1"), [" , "].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn all_hops_trusted_leaves_the_leftmost() {
        let proxies = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            proxies.client(ip("10.0.0.1"), ["10.9.9.9, 10.0.0.2"].into_iter()),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn an_entry_that_is_no_address_stops_the_walk_at_the_hop_after_it() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let header = ["203.0.113.7, unknown, 10.0.0.2"];
        assert_eq!(
            proxies.client(ip("10.0.0.1"), header.into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn entries_may_carry_ports_and_brackets_and_mapped_v4_is_v4() {
        let proxies = trusted(&["::1", "10.0.0.0/8"]);
        let peer = ip("::1");
        assert_eq!(
            proxies.client(peer, ["203.0.113.7:4711"].into_iter()),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies.client(peer, ["[2001:db8::7]:443"].into_iter()),
            ip("2001:db8::7")
        );
        assert_eq!(
            proxies.client(peer, ["[2001:db8::8]"].into_iter()),
            ip("2001:db8::8")
        );
        assert_eq!(
            proxies.client(peer, ["2001:db8::9"].into_iter()),
            ip("2001:db8::9")
        );
        // A dual-stack listener sees v4 peers as ::ffff:a.b.c.d.
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), ["::ffff:203.0.113.7"].into_iter()),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn networks_parse_as_operators_write_them() {
        assert!(TrustedProxies::parse("10.0.0.0/8").is_ok());
        assert!(TrustedProxies::parse("fd00::/8").is_ok());
        assert!(TrustedProxies::parse(" 127.0.0.1 ").is_ok());
        let err = TrustedProxies::parse("localhost").unwrap_err();
        assert!(
            err.contains("\"localhost\" is not an address or network"),
            "{err}"
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }
}
