//! What `wshost serve` is told: routes and limits.

use crate::outbox::Outbox;
use crate::sandbox::Grants;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;
use wshost_proto::forwarded::TrustedProxies;

/// One `--route PATH=FILE.wasm` (or a config file's `[[route]]`): requests
/// for exactly `PATH` go to the component in `FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub path: String,
    pub source: ComponentSource,
    /// The world the component must implement, if the config file says.
    pub world: Option<String>,
    /// The route's own limits and grants; `None`: the server's.
    pub limits: Option<Box<Limits>>,
}

/// Where a route's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    File(PathBuf),
    /// Built into the binary (the demo served with no `--route`).
    Builtin {
        name: &'static str,
        bytes: &'static [u8],
    },
}

impl std::fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentSource::File(path) => write!(f, "{}", path.display()),
            ComponentSource::Builtin { name, .. } => write!(f, "built-in {name}"),
        }
    }
}

/// A route's path must be a bare absolute path: it is matched exactly.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("route path {path:?} must start with '/'"));
    }
    if path.contains(['?', '#', ' ']) {
        return Err(format!(
            "route path {path:?} must be a bare path (no query, fragment or spaces)"
        ));
    }
    Ok(())
}

impl FromStr for RouteSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, file) = s
            .split_once('=')
            .ok_or_else(|| format!("expected PATH=FILE.wasm, got {s:?}"))?;
        check_path(path)?;
        if file.is_empty() {
            return Err(format!("route {path:?} names no component file"));
        }
        Ok(RouteSpec {
            path: path.to_string(),
            source: ComponentSource::File(file.into()),
            world: None,
            limits: None,
        })
    }
}

/// How the host keeps a socket alive and finds a peer that vanished
/// (a phone that lost its network, a NAT that forgot the connection): a
/// socket the peer has sent nothing on for `ping_interval` is pinged, and
/// one silent for `idle_timeout` is dropped (its guest sees it end, 1006).
/// A pong counts as hearing from the peer, so a live peer is never dropped
/// when `ping_interval` is well under `idle_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl Keepalive {
    pub fn enabled(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some()
    }

    /// When to look again: the ping due (unless sent) or the idle deadline,
    /// whichever comes first; far away when neither is set.
    pub fn next(&self, heard: Instant, pinged: bool) -> Instant {
        let ping = self.ping_interval.filter(|_| !pinged);
        [ping, self.idle_timeout]
            .into_iter()
            .flatten()
            .map(|after| heard + after)
            .min()
            .unwrap_or_else(|| heard + Duration::from_secs(86_400 * 365))
    }

    pub fn silent_too_long(&self, heard: Instant, now: Instant) -> bool {
        self.idle_timeout.is_some_and(|idle| now >= heard + idle)
    }

    pub fn ping_due(&self, heard: Instant, pinged: bool, now: Instant) -> bool {
        !pinged && self.ping_interval.is_some_and(|every| now >= heard + every)
    }
}

/// Per-connection limits and policy; every one is a `serve` flag (and a
/// config file key, per server or per route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message, received or pushed.
    pub max_message_size: usize,
    /// Largest single frame received.
    pub max_frame_size: usize,
    /// Largest HTTP request head.
    pub max_head_size: usize,
    /// How long a client may take to send its request head.
    pub head_timeout: Duration,
    /// How long the host waits for the peer's Close reply when it ends a connection.
    pub close_timeout: Duration,
    /// Messages (hub, topic, event sends) that may wait for one connection;
    /// one more evicts it.
    pub mailbox_capacity: usize,
    /// Bytes of such messages that may wait for one connection (at least
    /// one message of any size); past them it is evicted too.
    pub mailbox_bytes: usize,
    /// Bytes waiting for one connection past which an event guest's send
    /// reports `backed-up` (and `on-drain` follows).
    pub backpressure: usize,
    /// How long a guest may run without calling `connection` or `hub`.
    pub guest_cpu: Duration,
    /// Linear memory of one guest instance, all its memories together.
    pub guest_memory: usize,
    /// Elements of any one table of a guest instance.
    pub guest_table_elements: usize,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Tasks one coro-world instance serves at most; past them the route
    /// starts another instance.
    pub coro_tasks: usize,
    /// How long, after SIGINT/SIGTERM, handlers get to return before the process exits.
    pub shutdown_timeout: Duration,
    /// How long a write to a client may wait without the client taking a
    /// byte (a slow reader that reads is not dropped).
    pub write_timeout: Duration,
    /// Pings to quiet sockets, and when a silent one is dropped.
    pub keepalive: Keepalive,
    /// `Origin`s a WebSocket handshake may come from; empty: any.
    pub allowed_origins: Vec<String>,
    /// Agree to permessage-deflate with clients that offer it.
    pub deflate: bool,
    /// Peers whose `X-Forwarded-For` names the client (server-wide).
    pub trusted_proxies: TrustedProxies,
    /// Those peers begin each connection with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Bytes of large messages read and not yet taken by guests, process-wide.
    pub in_flight: usize,
    /// What the guest may reach through WASI (config file only).
    pub grants: Grants,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_head_size: 16 << 10,
            head_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(3),
            mailbox_capacity: 1024,
            mailbox_bytes: 16 << 20,
            backpressure: 64 << 10,
            guest_cpu: Duration::from_secs(1),
            guest_memory: 128 << 20,
            guest_table_elements: 100_000,
            max_connections: 10_000,
            coro_tasks: 2_000,
            shutdown_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            keepalive: Keepalive {
                ping_interval: Some(Duration::from_secs(25)),
                idle_timeout: Some(Duration::from_secs(60)),
            },
            allowed_origins: Vec::new(),
            deflate: false,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            in_flight: 1 << 30,
            grants: Grants::default(),
        }
    }
}

impl Limits {
    /// Refuse settings that cannot work, naming the key and its flag: a
    /// zero timeout would drop every connection at once, a ping interval
    /// at or past the idle timeout would drop quiet peers before pinging
    /// them. (Counts are refused at 0 as they are read.)
    pub fn check(&self) -> Result<(), String> {
        let timeouts = [
            ("write_timeout", self.write_timeout),
            ("handshake_timeout", self.head_timeout),
            ("close_timeout", self.close_timeout),
            ("guest_cpu_timeout", self.guest_cpu),
        ];
        for (key, value) in timeouts {
            if value.is_zero() {
                let flag = key.replace('_', "-");
                return Err(format!("{key} (--{flag}) must be more than 0 seconds"));
            }
        }
        // The budget's semaphore counts in u32 at once.
        if self.in_flight > u32::MAX as usize {
            return Err(format!(
                "max_in_flight (--max-in-flight) is at most {} bytes",
                u32::MAX
            ));
        }
        if let Keepalive {
            ping_interval: Some(ping),
            idle_timeout: Some(idle),
        } = self.keepalive
            && ping >= idle
        {
            return Err(format!(
                "ping_interval (--ping-interval, {ping:?}) must be shorter than idle_timeout \
                 (--idle-timeout, {idle:?}): a quiet peer would be dropped before it is pinged"
            ));
        }
        Ok(())
    }

    /// The memory, table and CPU caps of one guest instance.
    pub fn limiter(&self) -> crate::sandbox::GuestLimiter {
        crate::sandbox::GuestLimiter::new(
            self.guest_memory,
            self.guest_table_elements,
            self.guest_cpu,
        )
    }

    /// The outbox of a new connection `id`.
    pub fn outbox(&self, id: crate::bindings::ConnectionId) -> Outbox {
        Outbox::new(id, self.mailbox_capacity, self.backpressure).with_byte_cap(self.mailbox_bytes)
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
    fn parses_route() {
        let r: RouteSpec = "/websocket=echo.wasm".parse().unwrap();
        assert_eq!(r.path, "/websocket");
        assert_eq!(r.source, ComponentSource::File("echo.wasm".into()));
        assert_eq!((r.world, r.limits), (None, None));
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
    fn rejects_malformed_routes() {
        for bad in ["echo.wasm", "websocket=echo.wasm", "/ws=", "/ws?x=1=a.wasm"] {
            assert!(bad.parse::<RouteSpec>().is_err(), "{bad} accepted");
        }
    }
}
