//! The config file: any text is read as `serve --config` reads it (the
//! server's settings, `[limits]`, every `[[route]]` with its own limits,
//! every `[[history]]` and `[[presence]]`),
//! and is either refused with an error naming the file, or gives settings
//! that hold together: what the host runs with passed every check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wshost_config::{ConfigFile, LimitsFile};

/// Where the text claims to come from: a folder that does not exist, so a
/// route's relative `dirs` name nothing (an absolute one is looked up, read
/// only: whether it is a folder).
const PATH: &str = "/nonexistent-wshost-fuzz/wshost.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match ConfigFile::parse(text, Path::new(PATH)) {
        Ok(file) => file,
        Err(e) => {
            assert!(e.to_string().starts_with(PATH), "{e}");
            return;
        }
    };
    let none = LimitsFile::default();
    let _ = file.server(&ConfigFile::default());
    if let Ok(limits) = file.limits(&none) {
        limits.check().expect("the server's limits were checked");
    }
    if let Ok(routes) = file.routes(&none) {
        assert_eq!(routes.len(), file.routes.len());
        for route in routes {
            assert!(route.path.starts_with('/'), "{}", route.path);
            let limits = route.limits.expect("a file's route has its limits");
            limits.check().expect("a route's limits were checked");
            for (host, _) in &limits.grants.dirs {
                assert!(host.is_dir(), "{} was granted", host.display());
            }
        }
    }
    match file.history() {
        Ok(rules) => {
            assert_eq!(rules.len(), file.history.len());
            for rule in rules {
                assert!((1..=wshost_config::history::MAX_MESSAGES).contains(&rule.messages));
            }
        }
        Err(e) => assert!(e.to_string().starts_with(PATH), "{e}"),
    }
    match file.presence() {
        Ok(rules) => assert_eq!(rules.len(), file.presence.len()),
        Err(e) => assert!(e.to_string().starts_with(PATH), "{e}"),
    }
});
