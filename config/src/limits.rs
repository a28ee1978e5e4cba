//! Per-connection limits and policy: every one is a `serve` flag and a key
//! of the config file's `[limits]` (and, unless it is the server's as a
//! whole, of a route's own `limits`). Defined once, below.

use crate::settings::settings;
use crate::value::{
    Amount, AtLeastOne, Origins, Proxies, Seconds, SecondsOrNever, Switch, Timeout,
};
use std::time::Duration;
use wshost_proto::forwarded::TrustedProxies;

settings! {
    /// Limits as given: by flags, by the file's `[limits]`, by a route's
    /// `limits`; each `None` unless given.
    pub struct LimitsFile => Limits {
        given {}
        resolved {
            /// What the guest may reach through WASI (a route's `env` and
            /// `dirs` in the config file).
            pub grants: Grants = Grants::default(),
            /// Largest HTTP request head (not a setting).
            pub max_head_size: usize = 16 << 10,
        }

        /// Largest WebSocket message (and frame), received or pushed, in bytes.
        Route max_message_size: [usize] AtLeastOne = 16 << 20;

        /// Seconds a client may take to open: PROXY header, TLS and request
        /// head together.
        Server handshake_timeout: [f64] Timeout = Duration::from_secs(10);

        /// Seconds the host waits for the peer's Close reply when it ends a
        /// connection.
        Route close_timeout: [f64] Timeout = Duration::from_secs(3);

        /// Messages (hub, topic, event-world sends) that may wait for one
        /// connection; a connection whose queue overflows is closed with 1008.
        Route hub_queue: [usize] AtLeastOne = 1024;

        /// Bytes of such messages that may wait for one connection (one
        /// message of any size always fits); past them it is closed with 1008.
        Route hub_queue_bytes: [usize] AtLeastOne = 16 << 20;

        /// Bytes waiting for one event-world socket past which a send reports
        /// `backed-up` (and `on-drain` follows once they are written).
        Route backpressure_limit: [usize] Amount = 64 << 10;

        /// Seconds a guest may compute without waiting for the host before it
        /// is stopped.
        Route guest_cpu_timeout: [f64] Timeout = Duration::from_secs(1);

        /// Bytes of linear memory one guest instance may use, all its
        /// memories together.
        Route guest_memory: [usize] Amount = 128 << 20;

        /// Elements any one table of a guest instance may hold.
        Route guest_table_elements: [usize] Amount = 100_000;

        /// Connections served at once; past the cap new ones are answered 503.
        Server max_connections: [usize] AtLeastOne = 10_000;

        /// Tasks (connections) one coro-world instance serves at most; past
        /// them its route starts another instance.
        Route coro_tasks: [usize] AtLeastOne = 2_000;

        /// Seconds handlers get to return after SIGINT/SIGTERM before wshost
        /// exits.
        Server shutdown_timeout: [f64] Seconds = Duration::from_secs(10);

        /// Seconds a write may wait without the client taking a byte; past
        /// it the connection is dropped (a slow reader that reads is not).
        Route write_timeout: [f64] Timeout = Duration::from_secs(30);

        /// Seconds a socket may be quiet (nothing from the peer) before the
        /// host pings it; 0: never ping. Sockets are looked at once a tick,
        /// an eighth of the shortest period set (10 ms to 1 s): a ping or a
        /// drop comes up to a tick late, never early.
        Route ping_interval: [f64] SecondsOrNever = Some(Duration::from_secs(25));

        /// Seconds of hearing nothing from the peer (not even a pong) after
        /// which its socket is dropped (a half-open connection); 0: never.
        Route idle_timeout: [f64] SecondsOrNever = Some(Duration::from_secs(60));

        /// Accept WebSocket handshakes only from this `Origin` (e.g.
        /// https://app.example.com); repeatable. Others get 403; a request
        /// without `Origin` (not a browser) is let through.
        #[arg(long = "allowed-origin")]
        Route allowed_origins: [Vec<String>] Origins = Vec::new();

        /// Agree to permessage-deflate (RFC 7692) with clients that offer it:
        /// messages of 1 KiB or more are sent compressed.
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        Route deflate: [bool] Switch = false;

        /// Bytes of topic history (messages kept for recovery) all topics
        /// together; past it a publish to a kept topic lets that topic's
        /// oldest messages go first.
        Server history_memory: [usize] AtLeastOne = 64 << 20;

        /// Bytes of large messages (over 8 KiB a frame) read from peers and
        /// not yet taken by their guests, all connections together; past it,
        /// such reads wait (small messages never do).
        Server max_in_flight: [usize] AtLeastOne = 1 << 30;

        /// Trust this proxy (an address, or a network as 10.0.0.0/8) to name
        /// the client in `X-Forwarded-For`; repeatable. The host keys what it
        /// decides about a client (the coro world's quarantine) on the
        /// rightmost address there that is not a trusted proxy.
        #[arg(long = "trusted-proxy")]
        Server trusted_proxies: [Vec<String>] Proxies = TrustedProxies::default();

        /// Connections from trusted proxies begin with a PROXY protocol header
        /// (v1 or v2, as HAProxy and AWS NLB send): it names the client, which
        /// guests then get as `remote-addr`. Such a connection without one is
        /// dropped; others are served as they come.
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        Server proxy_protocol: [bool] Switch = false;
    }
}

/// What a route's guest may reach through WASI beyond its own log: nothing
/// unless the config file grants it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables it sees.
    pub env: Vec<(String, String)>,
    /// Host directories it may read (never write), at guest paths.
    pub dirs: Vec<(std::path::PathBuf, String)>,
}

/// How the host keeps a socket alive and finds a peer that vanished
/// (a phone that lost its network, a NAT that forgot the connection): a
/// socket the peer has sent nothing on for `ping_interval` is pinged, and
/// one silent for `idle_timeout` is dropped (its guest sees it end, 1006).
/// A pong counts as hearing from the peer, so a live peer is never dropped
/// when `ping_interval` is well under `idle_timeout` (which [`Limits::check`]
/// requires). Generic over the clock's instant (the host's is std's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl Keepalive {
    pub fn enabled(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some()
    }

    /// When to look again (at `now`): the ping due (unless sent) or the
    /// idle deadline, whichever comes first; far away when neither is set.
    /// A ping sent with no idle deadline is followed by a look a ping
    /// interval on: a peer that answered it is pinged again then.
    pub fn next<I: Instant>(&self, heard: I, pinged: bool, now: I) -> I {
        let ping = match (self.ping_interval, pinged) {
            (Some(every), false) => Some(heard + every),
            (Some(every), true) if self.idle_timeout.is_none() => Some(now + every),
            _ => None,
        };
        let idle = self.idle_timeout.map(|after| heard + after);
        [ping, idle]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| heard + Duration::from_secs(86_400 * 365))
    }

    pub fn silent_too_long<I: Instant>(&self, heard: I, now: I) -> bool {
        self.idle_timeout.is_some_and(|idle| now >= heard + idle)
    }

    pub fn ping_due<I: Instant>(&self, heard: I, pinged: bool, now: I) -> bool {
        !pinged && self.ping_interval.is_some_and(|every| now >= heard + every)
    }
}

/// A clock's instant: std's or tokio's.
pub trait Instant: Copy + Ord + std::ops::Add<Duration, Output = Self> {}
impl<I: Copy + Ord + std::ops::Add<Duration, Output = I>> Instant for I {}

impl Limits {
    /// Refuse settings that cannot work together, naming the keys and
    /// their flags (each alone was checked as it was read).
    pub fn check(&self) -> Result<(), String> {
        // The budget's semaphore counts in u32 at once.
        if self.max_in_flight > u32::MAX as usize {
            return Err(format!(
                "max_in_flight (--max-in-flight) is at most {} bytes",
                u32::MAX
            ));
        }
        if let (Some(ping), Some(idle)) = (self.ping_interval, self.idle_timeout)
            && ping >= idle
        {
            return Err(format!(
                "ping_interval (--ping-interval, {ping:?}) must be shorter than idle_timeout \
                 (--idle-timeout, {idle:?}): a quiet peer would be dropped before it is pinged"
            ));
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(
                "proxy_protocol (--proxy-protocol) needs trusted_proxies (--trusted-proxy): \
                 the balancers whose PROXY header is believed"
                    .into(),
            );
        }
        Ok(())
    }

    /// Pings to quiet sockets, and when a silent one is dropped.
    pub fn keepalive(&self) -> Keepalive {
        Keepalive {
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
        }
    }

    /// Whether a WebSocket handshake with `origin` is let through: any
    /// when no `--allowed-origin` is given; else one of them (ASCII case
    /// ignored), or none sent (not a browser: cross-site hijacking is a
    /// browser's attack, and a browser always sends `Origin`).
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                self.allowed_origins.is_empty()
                    || self
                        .allowed_origins
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_pinged_again_after_answering_even_without_an_idle_timeout() {
        let secs = Duration::from_secs;
        let heard = std::time::Instant::now();
        let ping_only = Keepalive {
            ping_interval: Some(secs(10)),
            idle_timeout: None,
        };
        assert_eq!(ping_only.next(heard, false, heard), heard + secs(10));
        // Pinged at 10 s: looked at again at 20 s (it was never again: one
        // ping in a socket's life when no idle timeout was set).
        let now = heard + secs(10);
        assert_eq!(ping_only.next(heard, true, now), now + secs(10));
        let both = Keepalive {
            ping_interval: Some(secs(10)),
            idle_timeout: Some(secs(30)),
        };
        assert_eq!(both.next(heard, false, heard), heard + secs(10));
        assert_eq!(
            both.next(heard, true, now),
            heard + secs(30),
            "the idle deadline"
        );
        let none = Keepalive {
            ping_interval: None,
            idle_timeout: None,
        };
        assert!(none.next(heard, false, heard) > heard + secs(86_400));
    }

    #[test]
    fn origins_are_matched_whole() {
        let open = Limits::default();
        assert!(open.origin_allowed(Some("https://evil.example")));
        let strict = Limits {
            allowed_origins: vec!["https://app.example".into()],
            ..Limits::default()
        };
        assert!(strict.origin_allowed(Some("https://APP.example")));
        assert!(strict.origin_allowed(None));
        assert!(!strict.origin_allowed(Some("https://app.example.evil")));
        assert!(!strict.origin_allowed(Some("http://app.example")));
    }

    #[test]
    fn defaults_hold_together() {
        Limits::default().check().unwrap();
    }
}
