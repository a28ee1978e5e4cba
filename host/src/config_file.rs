//! `wshost serve --config wshost.toml`: the server's settings, its routes,
//! and per route its own limits and the WASI grants of its guest (nothing
//! is granted by default). A key the file does not know is an error, and
//! every error names the file, the line and the key. Flags given on the
//! command line override the file (for every route).

use crate::config::{ComponentSource, Limits, RouteSpec, check_path};
use crate::sandbox::Grants;
use crate::tls::TlsFiles;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wshost_proto::forwarded::TrustedProxies;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where it was read from (for errors).
    #[serde(skip)]
    pub path: PathBuf,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub watch: Option<bool>,
    /// Redis URL: topics and sends reach the other processes (`--cluster`).
    pub cluster: Option<String>,
    /// `[tls]`: serve `wss://`.
    pub tls: Option<TlsFile>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteFile>,
}

/// `[tls]`: the certificate chain and key, PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Relative to the config file's folder.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub path: String,
    /// Relative to the config file's folder.
    pub component: PathBuf,
    /// `handler` or `events`: checked against the component when given.
    pub world: Option<String>,
    /// This route's own limits, over the file's `[limits]`.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the guest may read, at guest paths.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Relative to the config file's folder.
    pub host: PathBuf,
    pub guest: String,
}

/// Limits as the file (or the command line) sets them: each one optional,
/// named as its `serve` flag (underscores for dashes).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_message_size: Option<usize>,
    #[serde(default, deserialize_with = "seconds")]
    pub handshake_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub close_timeout: Option<f64>,
    pub hub_queue: Option<usize>,
    pub hub_queue_bytes: Option<usize>,
    pub backpressure_limit: Option<usize>,
    #[serde(default, deserialize_with = "seconds")]
    pub guest_cpu_timeout: Option<f64>,
    pub guest_memory: Option<usize>,
    pub guest_table_elements: Option<usize>,
    pub max_connections: Option<usize>,
    pub coro_tasks: Option<usize>,
    #[serde(default, deserialize_with = "seconds")]
    pub shutdown_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub write_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub ping_interval: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub idle_timeout: Option<f64>,
    pub allowed_origins: Option<Vec<String>>,
    pub deflate: Option<bool>,
    pub max_in_flight: Option<usize>,
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_protocol: Option<bool>,
}

impl LimitsFile {
    /// The first key set here that only the server as a whole has (a
    /// route's `limits` may not set it).
    pub fn server_wide(&self) -> Option<&'static str> {
        [
            ("max_connections", self.max_connections.is_some()),
            ("shutdown_timeout", self.shutdown_timeout.is_some()),
            ("handshake_timeout", self.handshake_timeout.is_some()),
            ("max_in_flight", self.max_in_flight.is_some()),
            ("trusted_proxies", self.trusted_proxies.is_some()),
            ("proxy_protocol", self.proxy_protocol.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// Set what this names in `limits`.
    pub fn apply(&self, limits: &mut Limits) -> Result<()> {
        // Named as the file and the command line name it.
        let both = |name: &str| format!("{name} (--{})", name.replace('_', "-"));
        let secs = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v).with_context(|| {
                format!(
                    "{} must be a non-negative number of seconds, not {v}",
                    both(name)
                )
            })
        };
        let positive = |name: &str, n: usize| {
            anyhow::ensure!(n > 0, "{} must be at least 1", both(name));
            Ok(n)
        };
        let optional = |name: &str, v: f64| {
            Ok::<_, anyhow::Error>(Some(secs(name, v)?).filter(|d| !d.is_zero()))
        };
        if let Some(v) = self.max_message_size {
            limits.max_message_size = v;
            limits.max_frame_size = v;
        }
        if let Some(v) = self.handshake_timeout {
            limits.head_timeout = secs("handshake_timeout", v)?;
        }
        if let Some(v) = self.close_timeout {
            limits.close_timeout = secs("close_timeout", v)?;
        }
        if let Some(v) = self.hub_queue {
            limits.mailbox_capacity = positive("hub_queue", v)?;
        }
        if let Some(v) = self.hub_queue_bytes {
            limits.mailbox_bytes = positive("hub_queue_bytes", v)?;
        }
        if let Some(v) = self.backpressure_limit {
            limits.backpressure = v;
        }
        if let Some(v) = self.guest_cpu_timeout {
            limits.guest_cpu = secs("guest_cpu_timeout", v)?;
        }
        if let Some(v) = self.guest_memory {
            limits.guest_memory = v;
        }
        if let Some(v) = self.guest_table_elements {
            limits.guest_table_elements = v;
        }
        if let Some(v) = self.max_connections {
            limits.max_connections = positive("max_connections", v)?;
        }
        if let Some(v) = self.coro_tasks {
            limits.coro_tasks = positive("coro_tasks", v)?;
        }
        if let Some(v) = self.shutdown_timeout {
            limits.shutdown_timeout = secs("shutdown_timeout", v)?;
        }
        if let Some(v) = self.write_timeout {
            limits.write_timeout = secs("write_timeout", v)?;
        }
        if let Some(v) = self.ping_interval {
            limits.keepalive.ping_interval = optional("ping_interval", v)?;
        }
        if let Some(v) = self.idle_timeout {
            limits.keepalive.idle_timeout = optional("idle_timeout", v)?;
        }
        if let Some(v) = &self.allowed_origins {
            limits.allowed_origins = v.iter().map(|o| origin(o)).collect::<Result<_>>()?;
        }
        if let Some(v) = self.deflate {
            limits.deflate = v;
        }
        if let Some(v) = self.max_in_flight {
            limits.in_flight = positive("max_in_flight", v)?;
        }
        if let Some(v) = &self.trusted_proxies {
            let nets = v
                .iter()
                .map(|n| TrustedProxies::parse(n).map_err(anyhow::Error::msg));
            let nets = nets
                .collect::<Result<_>>()
                .context("trusted_proxies (--trusted-proxy)")?;
            limits.trusted_proxies = TrustedProxies::new(nets);
        }
        if let Some(v) = self.proxy_protocol {
            limits.proxy_protocol = v;
        }
        Ok(())
    }
}

/// Seconds as a number, whole or not (`10` as well as `10.0`).
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Fraction(f64),
    }
    Ok(Some(match Number::deserialize(d)? {
        Number::Whole(n) => n as f64,
        Number::Fraction(f) => f,
    }))
}

/// An `Origin` as browsers send it: `scheme://host[:port]`, nothing after.
pub fn origin(origin: &str) -> Result<String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(origin.to_string())
        }
        _ => bail!(
            "{origin:?} is not an origin: give scheme://host[:port], e.g. https://app.example.com"
        ),
    }
}

impl ConfigFile {
    /// Read and check `path`; errors name the file, and the line and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the config file", path.display()))?;
        let mut file: ConfigFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        file.path = path.to_path_buf();
        Ok(file)
    }

    /// The `[tls]` files, resolved against the file's folder.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.tls.as_ref().map(|tls| TlsFiles {
            cert: dir.join(&tls.cert),
            key: dir.join(&tls.key),
        })
    }

    /// The server's limits: the defaults, then the file's `[limits]`, then
    /// `overrides` (the command line's).
    pub fn limits(&self, overrides: &LimitsFile) -> Result<Limits> {
        let mut limits = Limits::default();
        let file = self.path.display();
        self.limits
            .apply(&mut limits)
            .with_context(|| format!("{file}: [limits]"))?;
        overrides.apply(&mut limits)?;
        limits
            .check()
            .map_err(|why| match self.path.as_os_str().is_empty() {
                true => anyhow::anyhow!("{why}"),
                false => anyhow::anyhow!("{file}: [limits] or flags: {why}"),
            })?;
        anyhow::ensure!(
            !limits.proxy_protocol || !limits.trusted_proxies.is_empty(),
            "proxy_protocol (--proxy-protocol) needs trusted_proxies (--trusted-proxy): \
             the balancers whose PROXY header is believed"
        );
        Ok(limits)
    }

    /// The routes, each with its own limits (the file's `[limits]`, then its
    /// own `limits`, then `overrides`) and grants; paths relative to the
    /// file's folder.
    pub fn routes(&self, overrides: &LimitsFile) -> Result<Vec<RouteSpec>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let base = self.limits(&LimitsFile::default())?;
        let mut specs = Vec::new();
        for route in &self.routes {
            let context = || format!("{}: [[route]] {}", self.path.display(), route.path);
            check_path(&route.path)
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            if let Some(world) = &route.world
                && !["handler", "events"].contains(&world.as_str())
            {
                bail!(
                    "{}: world {world:?} is neither handler nor events",
                    context()
                );
            }
            if let Some(key) = route.limits.server_wide() {
                bail!(
                    "{}: limits.{key} is the server's, not a route's: set it in [limits]",
                    context()
                );
            }
            let mut limits = base.clone();
            route.limits.apply(&mut limits).with_context(context)?;
            overrides.apply(&mut limits)?;
            limits
                .check()
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            let dirs: Vec<_> = route
                .dirs
                .iter()
                .map(|d| (dir.join(&d.host), d.guest.clone()))
                .collect();
            // Checked here, once: a grant that cannot be opened would be
            // warned about at every connection.
            for (host, guest) in &dirs {
                if !host.is_dir() {
                    bail!(
                        "{}: dirs: {} (granted as {guest}) is not a directory",
                        context(),
                        host.display()
                    );
                }
            }
            limits.grants = Grants {
                env: route.env.clone().into_iter().collect(),
                dirs,
            };
            specs.push(RouteSpec {
                path: route.path.clone(),
                source: ComponentSource::File(dir.join(&route.component)),
                world: route.world.clone(),
                limits: Some(Box::new(limits)),
            });
        }
        Ok(specs)
    }
}

/// Keepalive as the file says it, for tests of the merge.
#[cfg(test)]
fn keepalive(file: &str) -> crate::config::Keepalive {
    let config: ConfigFile = toml::from_str(file).unwrap();
    config.limits(&LimitsFile::default()).unwrap().keepalive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_naming_the_line_and_key() {
        let err =
            toml::from_str::<ConfigFile>("listen = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("lisen"), "{text}");
        let err = toml::from_str::<ConfigFile>("[limits]\nguest_memory = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("guest_memory"), "{err}");
    }

    #[test]
    fn the_command_line_overrides_the_file_and_zero_means_never() {
        let file: ConfigFile =
            toml::from_str("[limits]\nmax_message_size = 100\nping_interval = 0\n").unwrap();
        let cli = LimitsFile {
            max_message_size: Some(1000),
            ..LimitsFile::default()
        };
        let limits = file.limits(&cli).unwrap();
        assert_eq!(limits.max_message_size, 1000);
        assert_eq!(
            keepalive("[limits]\nping_interval = 0\n").ping_interval,
            None
        );
    }
}
