//! Every subcommand given hostile arguments (a path that is not UTF-8 and does not exist,
//! control characters, an absurd number) ends with a clear error, never a panic.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

use common::*;

#[test]
fn hostile_arguments_end_in_errors_not_panics() {
    let work = tempfile::tempdir().unwrap();
    let mut bad = work.path().as_os_str().to_owned().into_vec();
    bad.extend_from_slice(b"/\xff\x1b[2J.png");
    let bad = OsString::from_vec(bad);
    let commands: &[&[&str]] = &[
        &["data", "stats", "BAD"],
        &["data", "show", "id", "--dataset", "BAD"],
        &["data", "fetch", "BAD"],
        &["tokenizer", "train", "BAD", "--out", "BAD"],
        &["tokenizer", "encode", "--tokenizer", "BAD", "a"],
        &["vq", "encode", "BAD", "--model", "BAD"],
        &["vq", "decode", "1,2", "--model", "BAD", "--out", "BAD"],
        &["vq", "reconstruct", "BAD", "--model", "BAD"],
        &[
            "vq",
            "train",
            "BAD",
            "--out",
            "BAD",
            "--steps",
            "18446744073709551615",
        ],
        &["clip", "recall", "BAD", "--clip", "BAD"],
        &["clip", "train", "BAD", "--out", "BAD"],
        &["memory", "build", "BAD", "--clip", "BAD", "--out", "BAD"],
        &["memory", "add", "BAD", "--memory", "BAD"],
        &["memory", "remove", "x", "--memory", "BAD"],
        &["memory", "compact", "--memory", "BAD"],
        &["memory", "info", "BAD"],
        &[
            "retrieve", "--memory", "BAD", "--text", "\x1b[2J", "-k", "1000000",
        ],
        &["train", "BAD", "--out", "BAD"],
        &["generate", "--text", "a", "--model", "BAD", "--out", "BAD"],
        &["caption", "BAD", "--model", "BAD"],
        &["infill", "BAD", "--caption", "\x1b[31m", "--model", "BAD"],
        &[
            "few-shot", "--demo", "BAD=x", "--query", "BAD", "--model", "BAD",
        ],
        &["metric", "cider", "--references", "BAD", "--results", "BAD"],
        &["metric", "fid", "BAD", "BAD", "--weights", "BAD"],
        &[
            "eval",
            "--ra",
            "BAD",
            "--baseline",
            "BAD",
            "--memory",
            "BAD",
            "--out",
            "BAD",
        ],
        &["serve", "--memory", "BAD", "--port", "0"],
    ];
    for command in commands {
        let args: Vec<OsString> = command
            .iter()
            .map(|arg| match *arg {
                "BAD" => bad.clone(),
                "BAD=x" => {
                    let mut demo = bad.clone();
                    demo.push("=x");
                    demo
                }
                other => other.into(),
            })
            .collect();
        let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
            .args(&args)
            .env("RACM3_HOME", work.path().join("home"))
            .output()
            .expect("running racm3");
        let said = stderr(&output);
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "racm3 {command:?} ended with {:?}:\n{said}",
            output.status
        );
        assert!(!said.contains("panicked"), "racm3 {command:?}:\n{said}");
        assert!(
            !said.contains('\x1b'),
            "racm3 {command:?} printed an escape:\n{said}"
        );
        assert!(
            said.contains("error"),
            "racm3 {command:?} said no error:\n{said}"
        );
    }
}

/// Runs `racm3 command… --flag=value` for each (flag, value) of `table` and asserts each is
/// refused with the setting named (`flag` with underscores).
fn assert_refused_by_name(command: &[&str], table: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    for (flag, value) in table {
        let setting = format!("--{flag}={value}");
        let mut args = command.to_vec();
        args.push(&setting);
        let output = racm3(work.path(), &args);
        let said = stderr(&output);
        let name = flag.replace('-', "_");
        assert!(!output.status.success(), "{setting} was accepted");
        assert!(said.contains(&format!("{name} is ")), "{setting}: {said}");
    }
}

// The sampling values the server refuses (crates/serve/tests/connections.rs) are refused
// here with the same setting named, before any model loads.
#[test]
fn out_of_range_sampling_values_are_refused_by_name() {
    assert_refused_by_name(
        &["generate", "--text", "red apple", "--out", "/dev/null"],
        &[
            ("cfg", "1e38"),
            ("temperature", "1e-45"),
            ("temperature", "-1"),
            ("top-p", "2"),
            ("top-k", "0"),
            ("retrieval-guidance", "-1"),
            ("copy-bias", "21"),
        ],
    );
}

// `racm3 eval` refuses its drawing settings by name before it loads anything.
#[test]
fn eval_refuses_out_of_range_drawing_settings_by_name() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("report");
    assert_refused_by_name(
        &[
            "eval",
            "--ra",
            "missing-run",
            "--baseline",
            "missing-run",
            "--memory",
            "missing-memory",
            "--out",
            out.to_str().unwrap(),
        ],
        &[
            ("copy-bias", "-21"),
            ("caption-copy-bias", "21"),
            ("samples", "0"),
            ("samples", "65"),
        ],
    );
}
