//! What the command-line tests share: running the binary with a cache folder, reading its
//! output, the fixture memory and the committed checkpoints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    racm3_testing::fixtures()
}

/// Runs racm3 with `home` as its cache folder.
pub fn racm3(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(args)
        .env("RACM3_HOME", home)
        .output()
        .expect("running racm3")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "racm3 failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("not JSON ({err}): {}", stdout(output));
    })
}

pub fn checkpoint(name: &str) -> PathBuf {
    racm3_testing::repo_root().join("checkpoints").join(name)
}

/// A flat memory of the fixture emoji at `memory`, keyed by the committed CLIP.
pub fn build_fixture_memory(memory: &Path) {
    let clip = checkpoint("clip-emoji-small");
    let built = racm3(
        &fixtures(),
        &[
            "memory",
            "build",
            "emoji",
            "--index",
            "flat",
            "--clip",
            clip.to_str().unwrap(),
            "--out",
            memory.to_str().unwrap(),
        ],
    );
    assert!(built.status.success(), "{}", stderr(&built));
}
