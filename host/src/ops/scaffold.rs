//! `wshost new`: a ready handler project in Rust, TypeScript, JavaScript,
//! Python or C, for any world its language supports. Its code is the example guest of `guests/` the tests
//! run (`echo` for the handler world, `chat` for the event world,
//! `coro-echo` for the coro world in Rust and Python), its
//! `wit/` the contract this wshost implements, its `build.sh` what makes
//! `dist/NAME.wasm`. A Rust, TypeScript, JavaScript or Python project gets
//! a copy of its language's guest SDK (they are not on crates.io, npm or
//! PyPI).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The languages a project can be made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Ts,
    Js,
    Python,
    C,
}

/// The world the project's component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Handler,
    Events,
    Coro,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Handler => "handler",
            World::Events => "events",
            World::Coro => "coro",
        }
    }
}

/// Files of this repository a project gets a copy of: for each PATH,
/// `(TO + PATH, the text of FROM + PATH)`, FROM relative to the repository.
macro_rules! copied {
    ($to:literal from $from:literal: $($path:literal),* $(,)?) => {
        &[$((concat!($to, $path), include_str!(concat!("../../../", $from, $path)))),*]
    };
}

/// The contract, as this wshost implements it.
const WIT: &[(&str, &str)] = copied!("wit/" from "wit/":
    "websocket.wit", "events.wit", "coro.wit", "history.wit", "presence.wit",
);

/// The Rust guest SDK, copied into a Rust project (it is not on crates.io),
/// with [`RUST_SDK_MANIFEST`].
const SDK: &[(&str, &str)] = copied!("wshost-guest/src/" from "guest-sdk/src/":
    "lib.rs", "connection.rs", "coro.rs", "events.rs", "frame.rs", "history.rs",
    "presence.rs", "hub.rs", "messages.rs", "request.rs", "response.rs", "topics.rs",
);

/// The Rust SDK's manifest in a project (the repository's names workspace
/// dependencies).
const RUST_SDK_MANIFEST: (&str, &str) = (
    "wshost-guest/Cargo.toml",
    include_str!("../../templates/rust/sdk-Cargo.toml"),
);

/// The TypeScript SDK, copied into a TypeScript or JavaScript project (not
/// its `gen-types.sh`, which reads the repository's `wit/`).
const JS_SDK: &[(&str, &str)] = copied!("wshost-guest/" from "guest-sdk/js/":
    "package.json",
    "tsconfig.json",
    "rolldown.config.mjs",
    "locate.mjs",
    "src/index.ts",
    "src/data.ts",
    "src/errors.ts",
    "src/events.ts",
    "src/handler.ts",
    "src/request.ts",
    "src/topics.ts",
    "src/wit/events.d.ts",
    "src/wit/handler.d.ts",
    "src/wit/interfaces/wshost-websocket-connection.d.ts",
    "src/wit/interfaces/wshost-websocket-event-types.d.ts",
    "src/wit/interfaces/wshost-websocket-handshake.d.ts",
    "src/wit/interfaces/wshost-websocket-history.d.ts",
    "src/wit/interfaces/wshost-websocket-hub.d.ts",
    "src/wit/interfaces/wshost-websocket-messages.d.ts",
    "src/wit/interfaces/wshost-websocket-presence.d.ts",
    "src/wit/interfaces/wshost-websocket-sockets.d.ts",
    "src/wit/interfaces/wshost-websocket-topics.d.ts",
    "src/wit/interfaces/wshost-websocket-types.d.ts",
);

/// The Python SDK, the package `wshost`, copied into a Python project.
const PYTHON_SDK: &[(&str, &str)] = copied!("wshost/" from "guest-sdk/python/wshost/":
    "__init__.py", "_data.py", "_errors.py", "_hub.py", "_topics.py",
    "coro.py", "events.py", "handler.py", "mypy.ini", "py.typed",
);

/// What a project of `lang` and `world` holds besides `wit/` and its
/// README: (path in the project, text), placeholders unfilled.
fn files(lang: Lang, world: World) -> Result<Vec<(&'static str, &'static str)>> {
    use World::*;
    let mut files = match (lang, world) {
        (Lang::Rust, Coro) => vec![(
            "src/lib.rs",
            include_str!("../../../guests/coro-echo/src/lib.rs"),
        )],
        (Lang::Python, Coro) => vec![(
            "app.py",
            include_str!("../../../guests/python/coro_echo.py"),
        )],
        (Lang::Ts | Lang::Js | Lang::C, Coro) => bail!(
            "the coro world needs the component model's async exports: Rust and Python have them (--lang rust or python); TypeScript, JavaScript and C: use --world handler or events"
        ),
        (Lang::Rust, Handler) => vec![(
            "src/lib.rs",
            include_str!("../../../guests/echo/src/lib.rs"),
        )],
        (Lang::Rust, Events) => vec![(
            "src/lib.rs",
            include_str!("../../../guests/chat/src/lib.rs"),
        )],
        // The examples carry no annotations of their own (the SDK's types
        // flow into them), so each is JavaScript as well as TypeScript.
        (Lang::Ts, Handler) => vec![("app.ts", include_str!("../../../guests/js/echo.ts"))],
        (Lang::Ts, Events) => vec![("app.ts", include_str!("../../../guests/js/chat.ts"))],
        (Lang::Js, Handler) => vec![("app.js", include_str!("../../../guests/js/echo.ts"))],
        (Lang::Js, Events) => vec![("app.js", include_str!("../../../guests/js/chat.ts"))],
        (Lang::Python, Handler) => vec![("app.py", include_str!("../../../guests/python/echo.py"))],
        (Lang::Python, Events) => vec![("app.py", include_str!("../../../guests/python/chat.py"))],
        (Lang::C, Handler) => vec![
            ("app.c", include_str!("../../../guests/c/echo.c")),
            ("common.h", include_str!("../../../guests/c/common.h")),
        ],
        (Lang::C, Events) => vec![("app.c", include_str!("../../../guests/c/chat.c"))],
    };
    match lang {
        Lang::Rust => {
            files.push((
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml"),
            ));
            files.push(("build.sh", include_str!("../../templates/rust/build.sh")));
            files.push(RUST_SDK_MANIFEST);
            files.extend_from_slice(SDK);
        }
        Lang::Ts | Lang::Js => {
            files.push((
                "package.json",
                include_str!("../../templates/js/package.json"),
            ));
            files.push((
                "tsconfig.json",
                include_str!("../../templates/js/tsconfig.json"),
            ));
            files.push(("build.sh", include_str!("../../templates/js/build.sh")));
            files.extend_from_slice(JS_SDK);
        }
        Lang::Python => {
            files.push(("build.sh", include_str!("../../templates/python/build.sh")));
            files.extend_from_slice(PYTHON_SDK);
        }
        Lang::C => {
            files.push(("errors.h", include_str!("../../../guests/c/errors.h")));
            files.push(("build.sh", include_str!("../../templates/c/build.sh")));
        }
    }
    Ok(files)
}

/// What the README says of the language.
fn described(lang: Lang) -> [(&'static str, &'static str); 4] {
    match lang {
        Lang::Rust => [
            ("language", "Rust"),
            ("lang", "rust"),
            ("source", "src/lib.rs"),
            (
                "toolchain",
                "cargo, for the wasm32-wasip2 target (added with rustup when missing)",
            ),
        ],
        Lang::Ts => [
            ("language", "TypeScript"),
            ("lang", "ts"),
            ("source", "app.ts"),
            (
                "toolchain",
                "npm installs tsc, rolldown and componentize-js into node_modules/",
            ),
        ],
        Lang::Js => [
            ("language", "JavaScript"),
            ("lang", "js"),
            ("source", "app.js"),
            (
                "toolchain",
                "npm installs tsc, rolldown and componentize-js into node_modules/",
            ),
        ],
        Lang::Python => [
            ("language", "Python"),
            ("lang", "python"),
            ("source", "app.py"),
            (
                "toolchain",
                "pip installs componentize-py and mypy into .venv/",
            ),
        ],
        Lang::C => [
            ("language", "C"),
            ("lang", "c"),
            ("source", "app.c"),
            (
                "toolchain",
                "clang + wasi-libc (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32); wit-bindgen is installed into .tools/",
            ),
        ],
    }
}

/// A project name: a letter, then letters, digits, `-` or `_` (it names the
/// folder, the crate or package, and the component file).
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !starts_well || !rest_ok || name.len() > 64 {
        bail!(
            "{name:?} is not a project name: use a lowercase letter, then lowercase letters, digits, - or _"
        );
    }
    Ok(())
}

/// Write the project `name` of `lang` and `world` into `dir` (which must
/// not exist, or be empty); the files written.
pub fn create(dir: &Path, name: &str, lang: Lang, world: World) -> Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map_or(true, |mut d| d.next().is_some()) {
        bail!("{}: already exists and is not empty", dir.display());
    }
    let (example, about) = match world {
        World::Handler => (
            "echo",
            "one instance per connection, straight-line `upgrade`, `recv`, `push` (it greets every message twice, as the seed's echo)",
        ),
        World::Events => (
            "chat",
            "one instance for all sockets, called per event (it sends every message to every socket through the topic `chat`, as the seed's broadcast)",
        ),
        World::Coro => (
            "coro-echo",
            "straight-line `upgrade`, `recv`, `push` as async tasks of one instance (thousands of connections in one instance; it greets every message twice, as the seed's echo)",
        ),
    };
    let crate_name = name.replace('-', "_");
    let mut fill = vec![
        ("name", name),
        ("crate", crate_name.as_str()),
        ("world", world.name()),
        ("example", example),
        ("about", about),
    ];
    fill.extend(described(lang));
    let readme = ("README.md", include_str!("../../templates/README.md"));
    let ignore = (".gitignore", include_str!("../../templates/gitignore"));
    let mut written = Vec::new();
    for (path, text) in files(lang, world)?
        .into_iter()
        .chain(WIT.iter().copied())
        .chain([readme, ignore])
    {
        let text = fill.iter().fold(text.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        });
        let target = dir.join(path);
        let folder = target.parent().expect("a file in the project");
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        write_new(&target, &text, path.ends_with(".sh"))?;
        written.push(target);
    }
    Ok(written)
}

/// Write `text` to a new file at `target`, never through a link or over
/// one already there (a symlink planted in the folder would have us write
/// elsewhere); made executable through the open file, not by its name.
fn write_new(target: &Path, text: &str, executable: bool) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .with_context(|| format!("creating {}", target.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", target.display()))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink planted where a file goes is refused, not followed: what
    /// it points to is neither written nor made executable.
    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("wshost-new-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let link = dir.join("build.sh");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_new(&link, "#!/bin/sh\nevil\n", true).unwrap_err();
        assert!(format!("{err:#}").contains("creating"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0, "the link's target was made executable");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file added to the SDK or to `wit/` must be copied too.
    #[test]
    fn the_copies_cover_the_sdk_and_the_wit() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (folder, copied, prefix) in [
            ("guest-sdk/src", SDK, "wshost-guest/src/"),
            ("guest-sdk/js/src", JS_SDK, "wshost-guest/src/"),
            ("guest-sdk/js/src/wit", JS_SDK, "wshost-guest/src/wit/"),
            (
                "guest-sdk/js/src/wit/interfaces",
                JS_SDK,
                "wshost-guest/src/wit/interfaces/",
            ),
            ("guest-sdk/python/wshost", PYTHON_SDK, "wshost/"),
            ("wit", WIT, "wit/"),
        ] {
            for entry in std::fs::read_dir(root.join(folder)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    continue;
                }
                let name = entry.file_name().into_string().unwrap();
                let path = format!("{prefix}{name}");
                assert!(
                    copied.iter().any(|(p, _)| *p == path),
                    "{folder}/{name} is not copied into new projects"
                );
            }
        }
    }
}
