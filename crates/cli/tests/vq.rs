//! `racm3 vq`: encoding and decoding, reconstruction figures, training and resuming.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn taming_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vqgan/taming-tiny")
}

// `vq encode` prints a grid of codes, `vq decode` turns them back into an image, and codes
// outside the codebook are refused with the limit named.
#[test]
fn vq_encode_then_decode() {
    let home = tempfile::tempdir().unwrap();
    let model = taming_tiny();
    let image = fixtures().join("pairs/00000.png");
    let encoded = json(&racm3(
        home.path(),
        &[
            "vq",
            "encode",
            image.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--json",
        ],
    ));
    let codes: Vec<u32> = serde_json::from_value(encoded[0]["codes"].clone()).unwrap();
    assert_eq!((codes.len(), encoded[0]["grid"].as_u64()), (256, Some(16)));
    let text: Vec<String> = codes.iter().map(u32::to_string).collect();
    let out = home.path().join("decoded.png");
    let decoded = racm3(
        home.path(),
        &[
            "vq",
            "decode",
            &text.join(" "),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(decoded.status.success(), "{}", stderr(&decoded));
    assert_eq!(image::open(&out).unwrap().width(), 32);
    let bad = racm3(
        home.path(),
        &[
            "vq",
            "decode",
            &"99 ".repeat(256),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&bad).contains("image code 99 is outside the codebook of 16 entries"),
        "{}",
        stderr(&bad)
    );
    // An unreadable image is named, with a hint for a command given files.
    let truncated = fixtures().join("bad-pairs/truncated.png");
    let unreadable = racm3(
        home.path(),
        &[
            "vq",
            "encode",
            truncated.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ],
    );
    let message = stderr(&unreadable);
    assert!(
        message.contains("truncated.png: not a readable image"),
        "{message}"
    );
    assert!(
        message.contains("hint: fix or replace that image"),
        "{message}"
    );
    // The hint names the command's help, not the image after it.
    let caption = racm3(home.path(), &["caption", "no-such-image.png"]);
    let message = stderr(&caption);
    assert!(message.contains("`racm3 caption --help`"), "{message}");
    // A folder without a model names the missing file and says what the system said, once.
    let empty = home.path().join("no-model");
    std::fs::create_dir(&empty).unwrap();
    let missing = racm3(
        home.path(),
        &[
            "vq",
            "encode",
            image.to_str().unwrap(),
            "--model",
            empty.to_str().unwrap(),
        ],
    );
    let message = stderr(&missing);
    let config = empty.join("config.json");
    assert!(
        message.contains(&format!("{}: No such file", config.display())),
        "{message}"
    );
    assert_eq!(message.matches("No such file").count(), 1, "{message}");
}

// `vq reconstruct` reports PSNR and codebook usage on a split and writes the grid.
#[test]
fn vq_reconstruct_reports_figures() {
    let home = tempfile::tempdir().unwrap();
    let grid = home.path().join("grid.png");
    let pairs = fixtures().join("pairs");
    let report = json(&racm3(
        home.path(),
        &[
            "vq",
            "reconstruct",
            pairs.to_str().unwrap(),
            "--split",
            "train",
            "--model",
            taming_tiny().to_str().unwrap(),
            "--out",
            grid.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(report["images"], 2);
    let psnr = report["psnr_db"].as_f64().unwrap();
    assert!(psnr.is_finite() && psnr > 0.0, "{report}");
    let usage = report["codebook_usage"].as_f64().unwrap();
    assert!(usage > 0.0 && usage <= 1.0, "{report}");
    let picture = image::open(&grid).unwrap();
    assert_eq!(
        (picture.width(), picture.height()),
        (2 + 2 * 34, 2 + 2 * 34)
    );
}

// `vq reconstruct --fid` scores the held-out val Twemoji drawings; where the cache holds
// none (the fixtures have no val entity) it says so and what to run, writing nothing.
#[test]
fn vq_reconstruct_fid_needs_the_held_out_drawings() {
    let work = tempfile::tempdir().unwrap();
    let grid = work.path().join("grid.png");
    let output = racm3(
        &fixtures(),
        &[
            "vq",
            "reconstruct",
            "emoji-twitter",
            "--split",
            "train",
            "--model",
            taming_tiny().to_str().unwrap(),
            "--out",
            grid.to_str().unwrap(),
            "--fid",
        ],
    );
    let said = stderr(&output);
    assert!(!output.status.success());
    assert!(
        said.contains("holds 0 of them") && said.contains("racm3 data fetch emoji"),
        "{said}"
    );
}

// `vq train` runs a tiny preset on a folder, writes a loadable model and a loss log, and a
// second call with more steps resumes where the first stopped.
#[test]
fn vq_train_writes_and_resumes_a_run() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("run");
    let pairs = fixtures().join("pairs");
    let args = |steps: &'static str| {
        vec![
            "vq".to_owned(),
            "train".into(),
            pairs.to_str().unwrap().into(),
            "--preset".into(),
            "tiny".into(),
            "--steps".into(),
            steps.into(),
            "--batch-size".into(),
            "2".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let run = |steps| {
        let argv = args(steps);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        racm3(home.path(), &argv)
    };
    let first = run("10");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("trained to step 10"),
        "{}",
        stdout(&first)
    );
    let second = run("20");
    assert!(
        stderr(&second).contains("steps 10..20"),
        "{}",
        stderr(&second)
    );
    let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());

    // The finished model copied out without its checkpoints, as one is committed: a new run
    // aimed at it is refused with the file named, and the model keeps every byte.
    let exported = home.path().join("exported");
    std::fs::create_dir(&exported).unwrap();
    for file in ["config.json", "model.safetensors", "loss.csv"] {
        std::fs::copy(out.join(file), exported.join(file)).unwrap();
    }
    let weights = std::fs::read(exported.join("model.safetensors")).unwrap();
    let mut argv = args("10");
    *argv.last_mut().unwrap() = exported.to_str().unwrap().into();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let refused = racm3(home.path(), &argv);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("model.safetensors is a trained model"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read(exported.join("model.safetensors")).unwrap(),
        weights
    );
    assert_eq!(
        std::fs::read_to_string(exported.join("loss.csv")).unwrap(),
        csv
    );
    assert!(!exported.join("train").exists());
}

// `vq train --ch` widens a preset (recorded in the run's config.json), and a width the
// norm groups cannot split, or too wide to allocate, is refused with the flag named.
#[test]
fn vq_train_sets_the_base_width() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("run");
    let pairs = fixtures().join("pairs");
    let train = |ch: &str| {
        racm3(
            home.path(),
            &[
                "vq",
                "train",
                pairs.to_str().unwrap(),
                "--preset",
                "tiny",
                "--ch",
                ch,
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let wide = train("12");
    assert!(wide.status.success(), "{}", stderr(&wide));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["ch"], 12, "{config}");
    let odd = train("6");
    assert!(!odd.status.success());
    assert!(
        stderr(&odd).contains("--ch/--decoder-ch: 6 channels do not split into 4 norm groups"),
        "{}",
        stderr(&odd)
    );
    let huge = train("100000");
    assert_eq!(huge.status.code(), Some(1), "{}", stderr(&huge));
    assert!(
        stderr(&huge).contains("a layer of 100000 channels is wider than the 4096 allowed"),
        "{}",
        stderr(&huge)
    );
}
