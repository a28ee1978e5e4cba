//! `wshost new`: the project of each language, in both worlds, built with
//! its own `build.sh` and served.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// `wshost new --lang LANG --world WORLD NAME` in a fresh folder; the project.
fn new_project(lang: &str, world: &str, name: &str) -> PathBuf {
    let parent = tempdir(&format!("new-{lang}-{world}"));
    let out = stdout_of_success(
        wshost()
            .args(["new", "--lang", lang, "--world", world, name])
            .current_dir(&parent),
    );
    let dir = parent.join(name);
    assert!(out.contains(&format!("{name}/build.sh")), "{out}");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("./build.sh"), "{readme}");
    assert!(
        readme.contains(&format!("wshost serve --route /ws=dist/{name}.wasm")),
        "{readme}"
    );
    assert!(
        !readme.contains("{{"),
        "a placeholder left unfilled:\n{readme}"
    );
    // The examples' comments speak of the seed: the README says what it is.
    assert!(readme.contains("Swoole's"), "{readme}");
    dir
}

/// Run the project's build.sh (with `env`); the component it built.
fn build(dir: &Path, name: &str, env: &[(&str, String)]) -> PathBuf {
    let out = Command::new(dir.join("build.sh"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running build.sh");
    assert!(
        out.status.success(),
        "{}/build.sh failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.join(format!("dist/{name}.wasm"));
    assert!(wasm.is_file(), "no {}", wasm.display());
    // Written beside and renamed (`serve --watch` never loads half a file):
    // nothing left beside.
    let beside = dir.join(format!("dist/{name}.wasm.tmp"));
    assert!(!beside.exists(), "{} left", beside.display());
    wasm
}

/// Serve `wasm` and check it answers as its world's example does.
async fn serves(wasm: &Path, world: &str) {
    let server = Server::start_with(&["--route".into(), format!("/ws={}", wasm.display())]);
    let mut ws = server.connect("/ws").await;
    send_text(&mut ws, "мир").await;
    match world {
        "handler" | "coro" => {
            assert_eq!(next_text(&mut ws).await, "Привет, мир!");
            assert_eq!(next_text(&mut ws).await, "Как ты там, мир?");
        }
        _ => assert_eq!(next_text(&mut ws).await, "Сервер：мир"),
    }
}

/// Every world of `lang`: made, built, served.
async fn both_worlds(lang: &str, env: &[(&str, String)]) {
    let coro = matches!(lang, "rust" | "python");
    let worlds = ["handler", "events", "coro"];
    for world in &worlds[..if coro { 3 } else { 2 }] {
        let world = *world;
        let name = format!("my-{lang}-{world}");
        let dir = new_project(lang, world, &name);
        let wasm = tokio::task::block_in_place(|| build(&dir, &name, env));
        serves(&wasm, world).await;
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_projects_build_and_serve() {
    // One target folder for both projects (and across runs): the SDK's
    // dependencies compile once.
    let target = Path::new(env!("WSHOST_GUEST_DIR")).join("../../scaffold");
    both_worlds(
        "rust",
        &[("CARGO_TARGET_DIR", target.display().to_string())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_projects_build_and_serve() {
    both_worlds("js", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_projects_build_and_serve() {
    both_worlds("ts", &[]).await;
}

/// Run the project's build.sh, which must fail; what it said.
fn failed_build(dir: &Path) -> String {
    let out = Command::new(dir.join("build.sh"))
        .current_dir(dir)
        .output()
        .expect("running build.sh");
    let told = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a broken app.ts built:\n{told}");
    told
}

/// A mistake in the author's code fails the build naming the author's file
/// and line (tsc runs first, and an exception at start-up is mapped back
/// through the bundle's source map), not the bundle componentize-js reads.
#[test]
fn a_type_error_names_the_authors_file() {
    let dir = new_project("ts", "events", "typo");
    let app = dir.join("app.ts");
    let code = std::fs::read_to_string(&app).unwrap();
    let wrong = code.replacen("ws.subscribe(ROOM)", "ws.subscrbe(ROOM)", 1);
    assert_ne!(
        code, wrong,
        "the example changed: pick another line to break"
    );
    std::fs::write(&app, wrong).unwrap();
    let told = failed_build(&dir);
    assert!(
        told.contains("app.ts(") && told.contains("subscrbe"),
        "the error does not name app.ts and the mistake:\n{told}"
    );
    assert!(!dir.join("dist/typo.wasm").exists());

    // An exception at start-up (componentize-js runs the module once) is
    // told at the author's line, not the bundle's.
    let lines = code.lines().count();
    std::fs::write(&app, format!("{code}throw new Error(\"boom at start\");\n")).unwrap();
    let told = failed_build(&dir);
    let at = format!("app.ts:{}:", lines + 1);
    assert!(
        told.contains(&at)
            && !told.contains(&format!("/{at}"))
            && told.contains("boom at start")
            && !told.contains("typo.js:"),
        "the exception is not told at {at}:\n{told}"
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_projects_build_and_serve() {
    both_worlds("python", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_projects_build_and_serve() {
    // The wit-bindgen the C examples' build installed: not compiled again.
    Lang::C.guest("echo");
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/c/.tools/bin");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    both_worlds("c", &[("PATH", path)]).await;
}

#[test]
fn bad_names_and_occupied_folders_are_refused() {
    let parent = tempdir("new-refused");
    for name in ["My App", "1st", "-x", "a/b", ""] {
        let out = wshost()
            .args(["new", "--lang", "rust", "--", name])
            .current_dir(&parent)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("is not a project name"),
            "{name:?}: {err}"
        );
    }
    std::fs::create_dir_all(parent.join("taken")).unwrap();
    std::fs::write(parent.join("taken/keep.txt"), "mine").unwrap();
    let out = wshost()
        .args(["new", "--lang", "js", "taken"])
        .current_dir(&parent)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already exists and is not empty"),
        "{err}"
    );
    // The coro world is for Rust and Python: the others are told so.
    let out = wshost()
        .args(["new", "--lang", "js", "--world", "coro", "async-js"])
        .current_dir(&parent)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Rust and Python have them"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(parent.join("taken/keep.txt")).unwrap(),
        "mine"
    );
    let out = wshost()
        .args(["new", "--lang", "cobol", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&parent);
}
