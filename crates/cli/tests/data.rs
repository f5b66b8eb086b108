//! `racm3 data`, `tokenizer` and the help texts as a user runs them: output for people and
//! for programs, and errors that say what went wrong and what to do.

mod common;

use std::process::Command;

use common::*;

// Output into a pipe whose reader is gone ends racm3 quietly, without a panic.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(["data", "stats", "--json"])
        .arg(fixtures().join("pairs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// `data stats --json` on a folder of pairs gives machine-readable counts.
#[test]
fn stats_json_on_a_folder() {
    let home = tempfile::tempdir().unwrap();
    let pairs = fixtures().join("pairs");
    let stats = json(&racm3(
        home.path(),
        &["data", "stats", pairs.to_str().unwrap(), "--json"],
    ));
    assert_eq!(stats["documents"], 3);
    assert_eq!(stats["skipped"], 0);
    assert_eq!(stats["image_sizes"]["64x64"], 3);
    let per_split: u64 = ["train", "val", "test"]
        .iter()
        .map(|s| stats["splits"][s]["documents"].as_u64().unwrap())
        .sum();
    assert_eq!(per_split, 3);
}

// Bad samples stop the command with the file named and a hint; --skip-bad counts them.
#[test]
fn bad_samples_fail_with_a_hint_or_are_skipped() {
    let home = tempfile::tempdir().unwrap();
    let bad = fixtures().join("bad-pairs");
    let failed = racm3(home.path(), &["data", "stats", bad.to_str().unwrap()]);
    assert!(!failed.status.success());
    let message = stderr(&failed);
    assert!(
        message.contains("latin1.txt: caption is not valid UTF-8"),
        "{message}"
    );
    assert!(message.contains("hint: "), "{message}");
    let skipped = racm3(
        home.path(),
        &[
            "data",
            "stats",
            bad.to_str().unwrap(),
            "--skip-bad",
            "--json",
        ],
    );
    assert_eq!(json(&skipped)["skipped"], 4);
}

// Unknown names fail with what is accepted; a built-in dataset is fetched on first use,
// and when that cannot work (no npm on PATH) the error says which client is missing.
#[test]
fn unknown_and_unfetchable_datasets_explain_themselves() {
    let home = tempfile::tempdir().unwrap();
    let unknown = racm3(home.path(), &["data", "stats", "imagenet"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("unknown dataset 'imagenet'"));
    let no_npm = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(["data", "stats", "emoji"])
        .env("RACM3_HOME", home.path())
        .env("PATH", home.path())
        .output()
        .unwrap();
    assert!(!no_npm.status.success());
    let message = stderr(&no_npm);
    assert!(message.contains("fetching it first"), "{message}");
    assert!(
        message.contains("fetching emoji: could not run npm"),
        "{message}"
    );
}

// `data show` prints a document and saves its image as a PNG that decodes to its pixels.
#[test]
fn show_prints_and_saves_a_document() {
    let home = tempfile::tempdir().unwrap();
    let pairs = fixtures().join("pairs");
    let out = home.path().join("apple.png");
    let args = [
        "data",
        "show",
        "pairs/00001",
        "--dataset",
        pairs.to_str().unwrap(),
    ];
    let shown = racm3(
        home.path(),
        &[&args[..], &["--out", out.to_str().unwrap()]].concat(),
    );
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        stdout(&shown).contains("caption:  red apple"),
        "{}",
        stdout(&shown)
    );
    let saved = image::open(&out).unwrap();
    assert_eq!((saved.width(), saved.height()), (64, 64));
    let document = json(&racm3(home.path(), &[&args[..], &["--json"]].concat()));
    assert_eq!(document["caption"], "red apple");
    assert_eq!(document["parts"][0]["image"]["width"], 64);
    let missing = racm3(
        home.path(),
        &[
            "data",
            "show",
            "pairs/99999",
            "--dataset",
            pairs.to_str().unwrap(),
        ],
    );
    assert!(stderr(&missing).contains("no document with id 'pairs/99999'"));
}

// `tokenizer train` writes a tokenizer.json that `tokenizer encode` loads and uses.
#[test]
fn tokenizer_train_then_encode() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("tok").join("tokenizer.json");
    let pairs = fixtures().join("pairs");
    let trained = racm3(
        home.path(),
        &[
            "tokenizer",
            "train",
            pairs.to_str().unwrap(),
            "--vocab-size",
            "300",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let summary = json(&trained);
    assert_eq!(
        summary["captions"], 2,
        "two of the three pairs are in train"
    );
    assert!(out.is_file());
    let encoded = json(&racm3(
        home.path(),
        &[
            "tokenizer",
            "encode",
            "--tokenizer",
            out.to_str().unwrap(),
            "red apple",
            "--json",
        ],
    ));
    let pieces: Vec<String> = serde_json::from_value(encoded["pieces"].clone()).unwrap();
    assert_eq!(pieces.concat(), "red apple");
}

// Every command's help carries an example, and the top-level help lists the stages.
#[test]
fn help_texts_have_examples() {
    let home = tempfile::tempdir().unwrap();
    let top = stdout(&racm3(home.path(), &["--help"]));
    let pipeline = [
        "`data`",
        "`tokenizer`",
        "`vq`",
        "`clip`",
        "`memory`",
        "`train`",
        "`generate`",
        "`serve`",
    ];
    let positions: Vec<usize> = pipeline
        .iter()
        .map(|stage| {
            top.find(stage)
                .unwrap_or_else(|| panic!("{stage} missing from {top}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "the stages are out of order: {top}"
    );
    for command in [
        &["data", "fetch"][..],
        &["data", "stats"],
        &["data", "show"],
        &["tokenizer", "train"],
        &["tokenizer", "encode"],
        &["clip", "train"],
        &["clip", "recall"],
        &["memory", "build"],
        &["memory", "add"],
        &["memory", "remove"],
        &["memory", "compact"],
        &["memory", "info"],
        &["retrieve"],
        &["train"],
        &["generate"],
        &["caption"],
        &["infill"],
        &["few-shot"],
        &["metric", "cider"],
        &["metric", "fid"],
        &["metric", "clipscore"],
        &["eval"],
        &["vq", "train"],
        &["vq", "encode"],
        &["vq", "decode"],
        &["vq", "reconstruct"],
        &["serve"],
        &["demo"],
    ] {
        let help = racm3(home.path(), &[command, &["--help"]].concat());
        assert!(help.status.success());
        assert!(
            stdout(&help).contains("Example: racm3"),
            "{command:?} help has no example"
        );
    }
}

// The README's main job on the real packages (fetched on first use into $RACM3_HOME):
// five renditions, every entity in exactly one split, none shared between train and test,
// and each rendition's coverage of the catalog with its unmatched entities listed.
#[test]
fn main_job_counts_the_real_emoji() {
    if !racm3_testing::external("main_job_counts_the_real_emoji") {
        return;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(["data", "stats", "--json"])
        .output()
        .unwrap();
    let stats = json(&output);
    assert_eq!(stats["dataset"], "emoji");
    assert_eq!(stats["documents"], 16579);
    assert_eq!(stats["entities"], 1911);
    for (vendor, images) in [
        ("twitter", 3786),
        ("google", 3786),
        ("openmoji", 3786),
        ("fluent", 3139),
        ("noto-v1", 2082),
    ] {
        assert_eq!(stats["vendors"][vendor], images, "{vendor}");
    }
    assert_eq!(stats["entities_shared_train_test"], 0);
    assert_eq!(stats["entities_shared_train_val"], 0);
    let renditions = stats["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 5);
    for rendition in renditions {
        let (matched, unmatched) = (
            rendition["entities_matched"].as_u64().unwrap(),
            rendition["unmatched"].as_array().unwrap().len() as u64,
        );
        assert_eq!(matched + unmatched, 1911, "{}", rendition["vendor"]);
    }
}
