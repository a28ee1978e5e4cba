//! What a route is: a path, the component that serves it, and what its
//! guest is allowed (its own limits, its WASI grants).

use crate::limits::Limits;
use std::path::PathBuf;
use std::str::FromStr;

/// One `--route PATH=FILE.wasm` (or a config file's `[[route]]`): requests
/// for exactly `PATH` go to the component in `FILE`.
#[derive(Debug, Clone, PartialEq)]
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

/// The certificate chain and key of `wss://`, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    fn rejects_malformed_routes() {
        for bad in ["echo.wasm", "websocket=echo.wasm", "/ws=", "/ws?x=1=a.wasm"] {
            assert!(bad.parse::<RouteSpec>().is_err(), "{bad} accepted");
        }
    }
}
