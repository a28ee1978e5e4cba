//! Builds every guest under `guests/` for `wasm32-wasip2` (they are components
//! as built) and tells the crate where they are: the demo embeds two of them,
//! the tests load the rest.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let host = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = host.parent().unwrap().to_path_buf();
    for watched in ["guest-sdk", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // Only the Rust guests: the other languages' folders are built by their
    // own scripts (from the tests), which write toolchains and outputs there.
    // A new Rust guest is also a new workspace member, so Cargo.toml changes.
    for entry in std::fs::read_dir(root.join("guests")).expect("reading guests/") {
        let dir = entry.expect("reading guests/").path();
        if dir.join("Cargo.toml").exists() {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }
    ensure_wasm_target();
    // A target dir of its own, so this nested build never waits on the lock
    // of the build that runs this script.
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--workspace",
            "--exclude",
            "wshost",
            "--exclude",
            "wshost-bench",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build set for the host must not leak into the guests' build.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running cargo to build the guests");
    if !out.status.success() {
        panic!(
            "building the guests failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let guests = target_dir.join("wasm32-wasip2").join("guest");
    println!("cargo:rustc-env=WSHOST_GUEST_DIR={}", guests.display());
}

/// Add the `wasm32-wasip2` target through rustup when the toolchain lacks
/// it: rustup adds the targets of `rust-toolchain.toml` only when it
/// installs the toolchain itself, so a machine that already had the
/// toolchain would otherwise stop at E0463. Without rustup, the build below
/// says what is missing.
fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(installed) = installed else { return };
    let has = String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == "wasm32-wasip2");
    if !installed.status.success() || has {
        return;
    }
    println!("cargo:warning=adding the wasm32-wasip2 target: rustup target add wasm32-wasip2");
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    if !matches!(added, Ok(status) if status.success()) {
        println!(
            "cargo:warning=`rustup target add wasm32-wasip2` failed; the guests will not build"
        );
    }
}
