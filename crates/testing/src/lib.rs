//! racm3-testing: what racm3's test suites share, and nothing a user of the library sees
//! (every crate takes it as a dev-dependency only).
//!
//! Slow external tests (PostgreSQL servers, headless Chromium, downloads with npm, apt or
//! pip) run only where [`EXTERNAL_SWITCH`] is `1`, as `.ci/run` sets it; elsewhere
//! `cargo test --workspace` runs everything else, offline, and each such test says it was
//! skipped.
#![deny(missing_docs)]

use std::path::PathBuf;

/// The environment variable that turns the slow external tests on.
pub const EXTERNAL_SWITCH: &str = "RACM3_EXTERNAL_TESTS";

/// True when the slow external tests should run; otherwise says on stderr that `what` was
/// skipped and how to run it.
pub fn external(what: &str) -> bool {
    let on = std::env::var(EXTERNAL_SWITCH).is_ok_and(|value| value == "1");
    if !on {
        eprintln!(
            "skipped {what}: it needs the network or local servers; set {EXTERNAL_SWITCH}=1 to run it"
        );
    }
    on
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed fixture data, laid out as `$RACM3_HOME` is (tests/fixtures/data).
pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/data")
}

/// The converted FID Inception weights: `$RACM3_FID_WEIGHTS` (set by `.ci/run`), else
/// fetched and converted by `.ci/fid-weights` (once; it keeps them in the cache).
pub fn fid_weights() -> PathBuf {
    if let Ok(path) = std::env::var("RACM3_FID_WEIGHTS") {
        return PathBuf::from(path);
    }
    let output = std::process::Command::new(repo_root().join(".ci/fid-weights"))
        .output()
        .expect("running .ci/fid-weights");
    assert!(
        output.status.success(),
        ".ci/fid-weights failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}
