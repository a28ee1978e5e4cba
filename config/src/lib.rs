//! wshost's settings, each defined once, and the config file.
//!
//! - [`settings`]: the macro every setting is defined with: its flag, its
//!   config key, its doc, its default and its check in one entry.
//! - [`limits`]: the per-connection limits (`[limits]`, flags, a route's
//!   own `limits`).
//! - [`file`]: the config file (`serve --config`): the server's own
//!   settings (also flags), `[tls]`, `[limits]`, `[[route]]`, `[[history]]`,
//!   `[[presence]]`.
//! - [`history`]: which topics keep their last messages (`[[history]]`).
//! - [`presence`]: which topics send join and leave notices (`[[presence]]`).
//! - [`route`]: what a route is (path, component, grants).
//! - [`value`]: the kinds of value, each with its check.
//! - [`reference`]: the settings' reference page, made from the entries.
//!
//! Invariant: a setting the host runs with was checked here (alone as it
//! was read, with the others by [`Limits::check`]); every error names the
//! key and its flag, and for the file the file and the line.

pub mod file;
pub mod history;
pub mod limits;
pub mod presence;
pub mod reference;
pub mod route;
pub(crate) mod settings;
pub mod value;

pub use file::{ConfigFile, ServerSettings};
pub use history::HistoryRule;
pub use limits::{Grants, Keepalive, Limits, LimitsFile};
pub use presence::PresenceRule;
pub use route::{ComponentSource, RouteSpec, TlsFiles, check_path};
pub use settings::{Scope, Setting};
