//! The kinds of value a setting takes, each with its check: what a flag or
//! a file key holds (`Self`) and what the host runs with (`Resolved`).
//! A value is checked once, when it is resolved, and the error names the
//! key and its flag, as the file and the command line spell them.

use std::time::Duration;
use wshost_proto::forwarded::TrustedProxies;

/// A setting's two names, for errors: `write_timeout (--write-timeout)`.
#[derive(Debug, Clone, Copy)]
pub struct Name<'a> {
    pub key: &'a str,
    pub flag: &'a str,
}

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (--{})", self.key, self.flag)
    }
}

/// A kind of setting value: what its flag and key hold (`Raw`, a plain
/// type clap and serde read as they are) and what the host runs with.
pub trait Value {
    type Raw;
    /// What the host runs with.
    type Resolved: Clone + std::fmt::Debug + PartialEq;
    /// How `--help` and the reference name the value.
    const UNIT: &'static str;
    /// Checked, as the host runs with it.
    fn resolve(raw: Self::Raw, name: Name<'_>) -> Result<Self::Resolved, String>;
    /// A default as the reference shows it.
    fn show(resolved: &Self::Resolved) -> String;
}

/// The longest any setting in seconds may be: a deadline further away
/// would overflow the clock's instant (a panic, where a year is "never" in
/// all but name).
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

fn seconds(v: f64, name: Name<'_>) -> Result<Duration, String> {
    if v > MAX_SECONDS {
        return Err(format!(
            "{name} must be at most {MAX_SECONDS} seconds (a year), not {v}"
        ));
    }
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{name} must be a non-negative number of seconds, not {v}"))
}

fn show_seconds(d: &Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Seconds, more than 0: a timeout of 0 would end everything at once.
pub enum Timeout {}

impl Value for Timeout {
    type Raw = f64;
    type Resolved = Duration;
    const UNIT: &'static str = "SECS";
    fn resolve(raw: f64, name: Name<'_>) -> Result<Duration, String> {
        let d = seconds(raw, name)?;
        match d.is_zero() {
            true => Err(format!("{name} must be more than 0 seconds")),
            false => Ok(d),
        }
    }
    fn show(d: &Duration) -> String {
        show_seconds(d)
    }
}

/// Seconds, 0 allowed.
pub enum Seconds {}

impl Value for Seconds {
    type Raw = f64;
    type Resolved = Duration;
    const UNIT: &'static str = "SECS";
    fn resolve(raw: f64, name: Name<'_>) -> Result<Duration, String> {
        seconds(raw, name)
    }
    fn show(d: &Duration) -> String {
        show_seconds(d)
    }
}

/// Seconds, 0 meaning never.
pub enum SecondsOrNever {}

impl Value for SecondsOrNever {
    type Raw = f64;
    type Resolved = Option<Duration>;
    const UNIT: &'static str = "SECS";
    fn resolve(raw: f64, name: Name<'_>) -> Result<Option<Duration>, String> {
        Ok(Some(seconds(raw, name)?).filter(|d| !d.is_zero()))
    }
    fn show(d: &Option<Duration>) -> String {
        d.as_ref().map_or("0 (never)".into(), show_seconds)
    }
}

/// A size or count from 0 to [`MAX_AMOUNT`].
pub enum Amount {}

impl Value for Amount {
    type Raw = usize;
    type Resolved = usize;
    const UNIT: &'static str = "N";
    fn resolve(raw: usize, name: Name<'_>) -> Result<usize, String> {
        match raw {
            n if n > MAX_AMOUNT => Err(format!("{name} must be at most {MAX_AMOUNT}")),
            n => Ok(n),
        }
    }
    fn show(n: &usize) -> String {
        n.to_string()
    }
}

/// The largest size or count a setting takes (1 TiB): past any machine's
/// memory, and far enough below `usize::MAX` that the server's sums and
/// products of settings (instance pools, semaphores) cannot overflow.
#[cfg(target_pointer_width = "64")]
pub const MAX_AMOUNT: usize = 1 << 40;
/// (Where `usize` is narrower: tokio's semaphore's own bound.)
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_AMOUNT: usize = usize::MAX >> 3;

/// A size or count from 1 to [`MAX_AMOUNT`].
pub enum AtLeastOne {}

impl Value for AtLeastOne {
    type Raw = usize;
    type Resolved = usize;
    const UNIT: &'static str = "N";
    fn resolve(raw: usize, name: Name<'_>) -> Result<usize, String> {
        match raw {
            0 => Err(format!("{name} must be at least 1")),
            n => Amount::resolve(n, name),
        }
    }
    fn show(n: &usize) -> String {
        n.to_string()
    }
}

/// The most event loops a server may run: far more than cores only adds
/// threads that contend for them.
pub const MAX_LOOPS: usize = 1024;

/// A number of event loops, from 1 to [`MAX_LOOPS`]; none: one per core
/// the process may run on.
pub enum Loops {}

impl Value for Loops {
    type Raw = usize;
    type Resolved = Option<usize>;
    const UNIT: &'static str = "N";
    fn resolve(raw: usize, name: Name<'_>) -> Result<Option<usize>, String> {
        match raw {
            1..=MAX_LOOPS => Ok(Some(raw)),
            _ => Err(format!(
                "{name} must be from 1 to {MAX_LOOPS} (leave it out for one per core)"
            )),
        }
    }
    fn show(n: &Option<usize>) -> String {
        match n {
            None => "one per core".into(),
            Some(n) => n.to_string(),
        }
    }
}

/// On or off: a bare flag (`--deflate`) is on, `--deflate=false` off.
pub enum Switch {}

impl Value for Switch {
    type Raw = bool;
    type Resolved = bool;
    const UNIT: &'static str = "BOOL";
    fn resolve(raw: bool, _: Name<'_>) -> Result<bool, String> {
        Ok(raw)
    }
    fn show(b: &bool) -> String {
        b.to_string()
    }
}

/// `Origin`s as browsers send them: `scheme://host[:port]`, nothing after.
/// A flag gives one per use; the file a list.
pub enum Origins {}

/// Whether `origin` is one as browsers send it.
pub fn origin(origin: &str) -> Result<String, String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(origin.to_string())
        }
        _ => Err(format!(
            "{origin:?} is not an origin: give scheme://host[:port], e.g. https://app.example.com"
        )),
    }
}

impl Value for Origins {
    type Raw = Vec<String>;
    type Resolved = Vec<String>;
    const UNIT: &'static str = "ORIGIN";
    fn resolve(raw: Vec<String>, name: Name<'_>) -> Result<Vec<String>, String> {
        let checked = raw.iter().map(|o| origin(o));
        checked
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: {e}"))
    }
    fn show(origins: &Vec<String>) -> String {
        match origins.is_empty() {
            true => "any".into(),
            false => origins.join(", "),
        }
    }
}

/// Networks of trusted proxies: `10.0.0.0/8`, `fd00::/8`, `127.0.0.1`.
pub enum Proxies {}

impl Value for Proxies {
    type Raw = Vec<String>;
    type Resolved = TrustedProxies;
    const UNIT: &'static str = "ADDR[/BITS]";
    fn resolve(raw: Vec<String>, name: Name<'_>) -> Result<TrustedProxies, String> {
        let nets = raw.iter().map(|n| TrustedProxies::parse(n));
        let nets = nets
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(TrustedProxies::new(nets))
    }
    fn show(proxies: &TrustedProxies) -> String {
        match proxies.is_empty() {
            true => "none".into(),
            false => format!("{proxies:?}"),
        }
    }
}

/// A socket address.
pub enum Address {}

impl Value for Address {
    type Raw = std::net::SocketAddr;
    type Resolved = std::net::SocketAddr;
    const UNIT: &'static str = "ADDR";
    fn resolve(raw: Self::Raw, _: Name<'_>) -> Result<Self::Resolved, String> {
        Ok(raw)
    }
    fn show(a: &Self::Resolved) -> String {
        a.to_string()
    }
}

/// Something that is off unless given (an address, a URL, a folder).
pub struct Maybe<T>(std::marker::PhantomData<T>);

impl<T: Clone + std::fmt::Debug + PartialEq> Value for Maybe<T> {
    type Raw = T;
    type Resolved = Option<T>;
    const UNIT: &'static str = "VALUE";
    fn resolve(raw: T, _: Name<'_>) -> Result<Option<T>, String> {
        Ok(Some(raw))
    }
    fn show(v: &Option<T>) -> String {
        match v {
            None => "none".into(),
            Some(v) => format!("{v:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_past_a_year_are_refused_naming_the_setting() {
        let name = Name {
            key: "ping_interval",
            flag: "ping-interval",
        };
        assert_eq!(
            SecondsOrNever::resolve(MAX_SECONDS, name),
            Ok(Some(Duration::from_secs(365 * 86_400)))
        );
        let refused = SecondsOrNever::resolve(1e12, name).unwrap_err();
        assert!(
            refused.starts_with("ping_interval (--ping-interval) must be at most"),
            "{refused}"
        );
        assert!(Timeout::resolve(f64::INFINITY, name).is_err());
    }
}
