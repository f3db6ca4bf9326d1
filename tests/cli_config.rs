//! Settings that cannot work are refused at start with a message that says what to do, before
//! anything runs: a webhook URL with an empty signing secret, an API token that is too short or
//! given twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo(extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["demo", "--listen", "127.0.0.1:0", "--status-every", "0"])
        .args(extra)
        .env_remove("TICKCAST_ALERT_WEBHOOK_SECRET")
        .env_remove("TICKCAST_ALERT_WEBHOOK_UNSIGNED")
        .env_remove("TICKCAST_API_TOKEN")
        .env_remove("TICKCAST_API_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tickcast demo")
}

#[test]
fn a_webhook_without_a_secret_is_refused_unless_unsigned_is_asked_for() {
    let hook = ["--alert-webhook-url", "http://127.0.0.1:9/hook"];
    let out = demo(&hook).wait_with_output().expect("demo ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the webhook secret is empty")
            && stderr.contains("TICKCAST_ALERT_WEBHOOK_SECRET")
            && stderr.contains("--alert-webhook-unsigned"),
        "{stderr}"
    );
    // Asked for unsigned, it starts and keeps running.
    keeps_running(demo(&[&hook[..], &["--alert-webhook-unsigned"]].concat()));
}

/// Waits 5 s, failing if `child` ends meanwhile, then stops it.
fn keeps_running(mut child: std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "demo with --alert-webhook-unsigned ended: {status}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

#[test]
fn api_tokens_are_long_enough_and_given_once() {
    let refused = |args: &[&str], want: &str| {
        let out = demo(args).wait_with_output().expect("demo ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    };
    refused(
        &["--api-token", "fifteen-chars!!"],
        "the API token has 15 characters; at least 16 are needed",
    );
    let dir = std::env::temp_dir().join(format!("tickcast-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "a-token-of-24-characters\n").unwrap();
    let file = file.to_str().unwrap();
    refused(
        &["--api-token", "sixteen-chars-ok", "--api-token-file", file],
        "give the API token once",
    );
    refused(
        &["--api-token-file", "/nonexistent/token"],
        "reading the API token file /nonexistent/token",
    );
    keeps_running(demo(&["--api-token-file", file]));
    std::fs::remove_dir_all(&dir).unwrap();
}
