//! `vmbus-pair serve` and `vmbus-pair connect` as two processes over a shared file.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vmbus-pair");

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vmbus-pair-{}-{name}.shm", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts `serve`, then runs `connect` with `connect_args`; returns (serve, connect) outputs.
fn pair(name: &str, connect_args: &[&str]) -> (Output, Output) {
    let path = temp_path(name);
    let serve = Command::new(BIN)
        .args(["serve", "--device", "echo", "--timeout", "20", "--shm"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `connect` waits (bounded) for the file and its header to appear.
    let connect = Command::new(BIN)
        .args(["connect", "--device", "echo", "--shm"])
        .arg(&path)
        .args(connect_args)
        .output()
        .unwrap();
    let serve = serve.wait_with_output().unwrap();
    assert!(!path.exists(), "serve removes its file");
    (serve, connect)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn echo_between_two_processes() {
    let (serve, connect) = pair("echo", &["--messages", "500", "--size", "3000"]);
    assert!(
        connect.status.success(),
        "connect: {}",
        text(&connect.stderr)
    );
    assert!(serve.status.success(), "serve: {}", text(&serve.stderr));
    assert!(text(&connect.stdout).contains("echo: 500 messages, 1500000 payload bytes"));
    assert!(text(&serve.stdout).contains("served 500 requests"));
}

#[test]
fn corrupting_client_makes_serve_fail_with_a_typed_error() {
    let (serve, connect) = pair("sabotage", &["--sabotage", "control-page"]);
    assert!(
        connect.status.success(),
        "connect: {}",
        text(&connect.stderr)
    );
    assert_eq!(serve.status.code(), Some(1));
    let err = text(&serve.stderr);
    assert!(
        err.contains("Ring is corrupt") && err.contains("not 8-byte aligned"),
        "{err}"
    );
}

#[test]
fn missing_or_foreign_files_are_clear_errors() {
    let missing = temp_path("missing");
    let out = Command::new(BIN)
        .args(["connect", "--device", "echo", "--shm"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("No such file"),
        "{}",
        text(&out.stderr)
    );

    let foreign = temp_path("foreign");
    std::fs::write(&foreign, vec![0u8; 10_000]).unwrap();
    let out = Command::new(BIN)
        .args(["connect", "--device", "echo", "--shm"])
        .arg(&foreign)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&foreign);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wrong magic"),
        "{}",
        text(&out.stderr)
    );
}
