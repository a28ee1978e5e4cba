//! The settings' reference page (`docs/src/settings.md`), made from their
//! definitions: a setting's doc, flag, key and default are written once,
//! where it is defined, and the page cannot fall behind (a test compares
//! it; `WSHOST_BLESS=1 cargo test -p wshost-config` writes it anew).

use crate::file::ConfigFile;
use crate::limits::LimitsFile;
use crate::settings::{Scope, Setting};

/// The page, in Markdown.
pub fn markdown() -> String {
    let mut page = String::from(
        "# Settings\n\n\
         <!-- Made by `wshost-config` from the settings' definitions: edit them \
         (config/src/limits.rs, config/src/file.rs), then run \
         `WSHOST_BLESS=1 cargo test -p wshost-config`. -->\n\n\
         Every setting is a `wshost serve` flag and a key of the config file \
         (`serve --config wshost.toml`). A flag given on the command line \
         overrides the file, for every route. Seconds may be fractions (`0.5`) \
         and are at most a year; sizes and counts are at most 2^40. \
         A switch is on with its bare flag (`--deflate`), off with `--deflate=false`.\n\n\
         ## The server (top-level keys)\n\n",
    );
    table(&mut page, &ConfigFile::settings(), false);
    page.push_str(
        "\nBeside them, `--tls-cert` and `--tls-key` are the file's `[tls]` table \
         (`cert`, `key`: PEM files), and each `--route PATH=FILE.wasm` is a \
         `[[route]]` (`path`, `component`, `world`, its own `limits`, `env`, \
         `dirs`). Paths in the file are relative to the file's folder.\n\n\
         ## Limits (`[limits]`, or a route's `limits`)\n\n\
         A route's own `limits` may set those marked *route*; the others are \
         the server's as a whole.\n\n",
    );
    table(&mut page, &LimitsFile::settings(), true);
    page
}

fn table(page: &mut String, settings: &[Setting], scoped: bool) {
    page.push_str(match scoped {
        true => "| key | flag | default | set by | meaning |\n|---|---|---|---|---|\n",
        false => "| key | flag | default | meaning |\n|---|---|---|---|\n",
    });
    for s in settings {
        let doc = s.doc.replace('\n', " ").replace('|', "\\|");
        let scope = match (scoped, s.scope) {
            (false, _) => String::new(),
            (true, Scope::Route) => " route |".into(),
            (true, Scope::Server) => " server |".into(),
        };
        let flag = match s.unit.is_empty() {
            true => format!("--{}", s.flag),
            false => format!("--{} {}", s.flag, s.unit),
        };
        page.push_str(&format!(
            "| `{}` | `{flag}` | {} |{scope} {doc} |\n",
            s.key, s.default
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_page_is_made_from_the_definitions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/src/settings.md");
        let made = markdown();
        if std::env::var_os("WSHOST_BLESS").is_some() {
            std::fs::write(path, &made).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == made,
            "docs/src/settings.md is not what the definitions say: run \
             `WSHOST_BLESS=1 cargo test -p wshost-config` and commit it"
        );
    }
}
