//! `wshost serve --config wshost.toml`: the server's settings, its routes,
//! and per route its own limits and the WASI grants of its guest (nothing
//! is granted by default). A key the file does not know is an error, and
//! every error names the file, the line and the key. Flags given on the
//! command line override the file (for every route).

use crate::history::{HistoryFile, HistoryRule};
use crate::limits::{Grants, Limits, LimitsFile};
use crate::presence::{PresenceFile, PresenceRule};
use crate::route::{ComponentSource, RouteSpec, TlsFiles, check_path};
use crate::settings::settings;
use crate::value::{Address, Loops, Maybe, Switch};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

settings! {
    /// The file as written (its top-level keys are also `serve` flags,
    /// each `None` unless given).
    pub struct ConfigFile => ServerSettings {
        given {
            /// Where it was read from (for errors).
            #[serde(skip)]
            pub path: PathBuf,
            /// `[tls]`: serve `wss://`.
            pub tls: Option<TlsFile>,
            #[serde(default)]
            pub limits: LimitsFile,
            #[serde(default, rename = "route")]
            pub routes: Vec<RouteFile>,
            /// `[[history]]`: topics that keep their last messages.
            #[serde(default)]
            pub history: Vec<HistoryFile>,
            /// `[[presence]]`: topics that send join and leave notices.
            #[serde(default)]
            pub presence: Vec<PresenceFile>,
        }
        resolved {}

        /// Address to listen on (port 0 picks a free port).
        Server listen: [SocketAddr] Address = SocketAddr::from(([127, 0, 0, 1], 9502));

        /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this
        /// address (keep it private: e.g. 127.0.0.1:9503).
        #[arg(value_name = "ADDR")]
        Server admin: [SocketAddr] Maybe<SocketAddr> = None;

        /// Reload a route's component when its file changes (as SIGHUP does
        /// for all): checked every half second.
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        Server watch: [bool] Switch = false;

        /// Make topics and sends by connection id reach the other wshost
        /// processes using this Redis (e.g. redis://127.0.0.1:6379).
        #[arg(value_name = "URL")]
        Server cluster: [String] Maybe<String> = None;

        /// Event loops to run connections on, each a thread that runs a
        /// connection's read, guest call and write without waking another
        /// (an event route's sockets: on its instance's loop); none: one
        /// per core the process may run on.
        Server loops: [usize] Loops = None;

        /// Keep compiled components in this folder so a restart skips
        /// compiling them; none: $XDG_CACHE_HOME/wshost or ~/.cache/wshost.
        #[arg(value_name = "DIR")]
        Server cache_dir: [PathBuf] Maybe<PathBuf> = None;

        /// Compile every component at start-up; keep nothing on disk.
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        Server no_cache: [bool] Switch = false;
    }
}

/// `[tls]`: the certificate chain and key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Relative to the config file's folder.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub path: String,
    /// Relative to the config file's folder.
    pub component: PathBuf,
    /// `handler`, `events` or `coro`: checked against the component when given.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Relative to the config file's folder.
    pub host: PathBuf,
    pub guest: String,
}

impl ConfigFile {
    /// Read and check `path`; errors name the file, and the line and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the config file", path.display()))?;
        ConfigFile::parse(&text, path)
    }

    /// `text` as the file at `path` (for errors and relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut file: ConfigFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        file.path = path.to_path_buf();
        Ok(file)
    }

    /// The folder paths in the file are relative to.
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The server's own settings: the defaults, then the file's, then
    /// `flags` (the command line's); a folder the file names is relative
    /// to the file's folder. A `--cache-dir` flag turns the file's
    /// `no_cache` off; `no_cache` beside a `cache_dir` from the same
    /// source is a contradiction, refused.
    pub fn server(&self, flags: &ConfigFile) -> Result<ServerSettings> {
        for (given, source) in [
            (self, self.path.display().to_string()),
            (flags, "flags".into()),
        ] {
            anyhow::ensure!(
                !(given.no_cache == Some(true) && given.cache_dir.is_some()),
                "{source}: no_cache (--no-cache) and cache_dir (--cache-dir) contradict each other"
            );
        }
        let mut server = ServerSettings::default();
        self.apply(&mut server)
            .map_err(|why| anyhow::anyhow!("{}: {why}", self.path.display()))?;
        server.cache_dir = server.cache_dir.map(|dir| self.dir().join(dir));
        if flags.cache_dir.is_some() {
            server.no_cache = false;
        }
        flags.apply(&mut server).map_err(anyhow::Error::msg)?;
        Ok(server)
    }

    /// The `[[history]]` entries, checked, in order; errors name the file
    /// and the entry.
    pub fn history(&self) -> Result<Vec<HistoryRule>> {
        self.checked("[[history]]", &self.history, HistoryFile::rule)
    }

    /// The `[[presence]]` entries, checked, in order; errors name the file
    /// and the entry.
    pub fn presence(&self) -> Result<Vec<PresenceRule>> {
        self.checked("[[presence]]", &self.presence, PresenceFile::rule)
    }

    /// Each of `entries` (of `section`) checked by `rule`, in order; errors
    /// name the file, the section and the entry.
    fn checked<E, R>(
        &self,
        section: &str,
        entries: &[E],
        rule: impl Fn(&E) -> Result<R, String>,
    ) -> Result<Vec<R>> {
        let file = self.path.display();
        let rules = entries.iter().enumerate().map(|(i, entry)| {
            rule(entry).map_err(|why| anyhow::anyhow!("{file}: {section} #{}: {why}", i + 1))
        });
        rules.collect()
    }

    /// The `[tls]` files, resolved against the file's folder.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls.as_ref().map(|tls| TlsFiles {
            cert: self.dir().join(&tls.cert),
            key: self.dir().join(&tls.key),
        })
    }

    /// The server's limits: the defaults, then the file's `[limits]`, then
    /// `overrides` (the command line's), then checked together.
    pub fn limits(&self, overrides: &LimitsFile) -> Result<Limits> {
        let limits = self.merged(None, overrides)?;
        limits
            .check()
            .map_err(|why| match self.path.as_os_str().is_empty() {
                true => anyhow::anyhow!("{why}"),
                false => anyhow::anyhow!("{}: [limits] or flags: {why}", self.path.display()),
            })?;
        Ok(limits)
    }

    /// The defaults, the file's `[limits]`, `route`'s own, then
    /// `overrides`, each value checked (not yet together).
    fn merged(&self, route: Option<&LimitsFile>, overrides: &LimitsFile) -> Result<Limits> {
        let mut limits = Limits::default();
        let file = self.path.display();
        self.limits
            .apply(&mut limits)
            .map_err(|why| anyhow::anyhow!("{file}: [limits]: {why}"))?;
        if let Some(route) = route {
            route.apply(&mut limits).map_err(anyhow::Error::msg)?;
        }
        overrides.apply(&mut limits).map_err(anyhow::Error::msg)?;
        Ok(limits)
    }

    /// The routes, each with its own limits (the file's `[limits]`, then its
    /// own `limits`, then `overrides`) and grants; paths relative to the
    /// file's folder.
    pub fn routes(&self, overrides: &LimitsFile) -> Result<Vec<RouteSpec>> {
        let mut specs = Vec::new();
        for route in &self.routes {
            let context = || format!("{}: [[route]] {}", self.path.display(), route.path);
            check_path(&route.path)
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            if let Some(world) = &route.world
                && !["handler", "events", "coro"].contains(&world.as_str())
            {
                bail!(
                    "{}: world {world:?} is none of handler, events, coro",
                    context()
                );
            }
            if let Some(key) = route.limits.server_wide() {
                bail!(
                    "{}: limits.{key} is the server's, not a route's: set it in [limits]",
                    context()
                );
            }
            // Checked as the route runs: the flags can set right what the
            // file's `[limits]` alone would get wrong.
            let mut limits = self
                .merged(Some(&route.limits), overrides)
                .with_context(context)?;
            limits
                .check()
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            let dirs: Vec<_> = route
                .dirs
                .iter()
                .map(|d| (self.dir().join(&d.host), d.guest.clone()))
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
                source: ComponentSource::File(self.dir().join(&route.component)),
                world: route.world.clone(),
                limits: Some(Box::new(limits)),
            });
        }
        Ok(specs)
    }
}

/// Keepalive as the file says it, for tests of the merge.
#[cfg(test)]
fn keepalive(file: &str) -> crate::limits::Keepalive {
    let config: ConfigFile = toml::from_str(file).unwrap();
    config.limits(&LimitsFile::default()).unwrap().keepalive()
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

    #[test]
    fn flags_set_right_what_the_files_limits_alone_get_wrong_for_every_route() {
        let file: ConfigFile = toml::from_str(
            "[limits]\nping_interval = 70\n[[route]]\npath = \"/x\"\ncomponent = \"x.wasm\"\n",
        )
        .unwrap();
        assert!(file.routes(&LimitsFile::default()).is_err());
        let flags = LimitsFile {
            idle_timeout: Some(120.0),
            ..LimitsFile::default()
        };
        let routes = file.routes(&flags).unwrap();
        let limits = routes[0].limits.as_ref().unwrap();
        assert_eq!(
            limits.idle_timeout,
            Some(std::time::Duration::from_secs(120))
        );
        file.limits(&flags).unwrap();
    }

    #[test]
    fn a_cache_dir_flag_turns_the_files_no_cache_off_and_both_at_once_are_refused() {
        let file: ConfigFile = toml::from_str("no_cache = true\n").unwrap();
        let flags = ConfigFile {
            cache_dir: Some("/var/cache/w".into()),
            ..ConfigFile::default()
        };
        let server = file.server(&flags).unwrap();
        assert!(!server.no_cache);
        assert_eq!(server.cache_dir, Some("/var/cache/w".into()));
        assert!(file.server(&ConfigFile::default()).unwrap().no_cache);
        let both: ConfigFile = toml::from_str("no_cache = true\ncache_dir = \"c\"\n").unwrap();
        let err = both.server(&ConfigFile::default()).unwrap_err().to_string();
        assert!(err.contains("contradict"), "{err}");
    }
}
