//! `X-Forwarded-For`, as a trusted proxy passes it on: an untrusted peer is
//! always its own client, whatever it wrote; header lines read as one list;
//! a lone untrusted address is the client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use wshost_proto::forwarded::TrustedProxies;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let nets = ["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "2001:db8::/32"];
    let trusted = nets
        .iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, n)| TrustedProxies::parse(n).unwrap())
        .collect();
    let proxies = TrustedProxies::new(trusted);
    let peers: [IpAddr; 3] = [
        "10.1.2.3".parse().unwrap(),
        "::1".parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
    ];
    let peer = peers[(pick >> 5) as usize % peers.len()];
    let lines = text.split('\n');
    let client = proxies.client(peer, lines.clone());
    if !proxies.trusts(peer) {
        assert_eq!(client, peer.to_canonical());
        return;
    }
    // Several header lines read as one list, in order: the same client as
    // one line holding them all.
    let joined = lines.collect::<Vec<_>>().join(",");
    assert_eq!(client, proxies.client(peer, std::iter::once(joined.as_str())));
    // One bare address, untrusted: it is the client.
    if let Ok(ip) = text.trim().parse::<IpAddr>()
        && !proxies.trusts(ip)
    {
        assert_eq!(client, ip.to_canonical());
    }
});
