//! WebSocket client libraries no one here wrote (Python `websockets`, Node
//! `ws`), installed by `tests/clients/setup.sh`, driving scripts in
//! `tests/clients/`.

use std::path::Path;
use std::process::Command;
use std::sync::Once;

/// `tests/clients/setup.sh`, once per test process.
pub fn clients() -> &'static Path {
    static SETUP: Once = Once::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients");
    SETUP.call_once(|| {
        let status = Command::new(dir.join("setup.sh"))
            .status()
            .expect("running setup.sh");
        assert!(status.success(), "tests/clients/setup.sh failed");
    });
    Box::leak(dir.into_boxed_path())
}

/// Run a client script against `url`, with `env` set; its stdout, after
/// checking it said `ok`.
pub fn run_client(program: &str, script: &str, url: &str, env: &[(&str, &Path)]) -> String {
    let dir = clients();
    // A path inside tests/clients/ (the venv's python), or a command on PATH.
    let program = if program.contains('/') {
        dir.join(program)
    } else {
        program.into()
    };
    let out = Command::new(&program)
        .arg(dir.join(script))
        .arg(url)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("\nok"),
        "{script} against {url}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
