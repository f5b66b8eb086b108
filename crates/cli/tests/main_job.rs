//! The main job (`racm3 demo`), the experiment (`racm3 eval`) and `racm3 metric` on a
//! user's own files.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

// `metric cider` reads COCO-format files and prints pycocoevalcap's numbers; per-image
// scores come with --json; a file that is not JSON is named.
#[test]
fn metric_cider_on_coco_files() {
    let cider = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cider");
    let (references, results) = (cider.join("references.json"), cider.join("results.json"));
    let args = [
        "metric",
        "cider",
        "--references",
        references.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ];
    let home = fixtures();
    let plain = racm3(&home, &args);
    assert!(
        stdout(&plain).contains("CIDEr-D 1.4995"),
        "{}",
        stdout(&plain)
    );
    let scores = json(&racm3(&home, &[&args[..], &["--json"]].concat()));
    assert_eq!(scores["images"], 56);
    assert_eq!(scores["per_image"].as_array().unwrap().len(), 56);
    assert!((scores["cider_d"].as_f64().unwrap() - 1.499499).abs() < 1e-6);
    let broken = racm3(
        &home,
        &[
            "metric",
            "cider",
            "--references",
            references.to_str().unwrap(),
            "--results",
            references.to_str().unwrap(),
        ],
    );
    assert!(
        !broken.status.success() && stderr(&broken).contains("not a COCO results list"),
        "{}",
        stderr(&broken)
    );
}

// The README's main job on the real emoji: it builds the memory, loads the committed
// generators, writes a report with one row per held-out caption and a picture with the
// real image, two retrieved documents and a sample of each model per row, then serves
// the page and prints its URL.
#[test]
fn main_job_demo_writes_its_report_and_serves() {
    if !racm3_testing::external("main_job_demo_writes_its_report_and_serves") {
        return;
    }
    use std::io::{BufRead, Read};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .current_dir(&root)
        .args([
            "demo",
            "--captions",
            "2",
            "--samples",
            "1",
            "--port",
            "0",
            "--out",
        ])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            let mut stderr = String::new();
            let _ = demo.stderr.take().unwrap().read_to_string(&mut stderr);
            let _ = demo.kill();
            panic!("the demo ended without a URL: {printed}{stderr}");
        };
        printed.push_str(&line);
        printed.push('\n');
        if let Some(start) = line.find("http://") {
            break line[start..].split_whitespace().next().unwrap().to_owned();
        }
    };
    let page = ureq::get(&url)
        .call()
        .map(|mut r| r.body_mut().read_to_string());
    let health = ureq::get(&format!("{url}health"))
        .call()
        .map(|mut r| r.body_mut().read_to_string());
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(page.unwrap().unwrap().contains("<title>racm3"));
    assert!(health.unwrap().unwrap().contains("\"generator\":true"));
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let rows: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("| 1 |") || line.starts_with("| 2 |"))
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    assert!(rows.iter().all(|row| row.contains('(')), "{report}");
    // 1 real + 2 retrieved + 3 samples of 128 pixels, and 4 gaps of 12.
    let size = image::image_dimensions(out.path().join("samples.png")).unwrap();
    assert_eq!(size, (6 * 128 + 4 * 12, 2 * (128 + 4)));
    assert!(out.path().join("memory/manifest.bin").exists());
}

// `eval --tasks few-shot` on the fixture Fashion-MNIST with the committed generators: a
// report of every setting at 1, 2 and 4 shots over the same episodes, with its plot.
#[test]
fn eval_few_shot_writes_its_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().unwrap();
    let memory = work.path().join("memory");
    build_fixture_memory(&memory);
    let out = work.path().join("report");
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .current_dir(&root)
        .env("RACM3_HOME", fixtures())
        .args(["eval", "--ra", "checkpoints/cm3-emoji-small", "--baseline"])
        .args([
            "checkpoints/cm3-emoji-small-baseline",
            "--tasks",
            "few-shot",
        ])
        .args(["--few-shot-queries", "2", "--memory"])
        .arg(&memory)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let settings = report["few_shot"]["settings"].as_object().unwrap();
    assert_eq!(settings.len(), 3);
    for accuracy in settings.values() {
        for shots in ["1", "2", "4"] {
            let correct = accuracy[shots]["correct"].as_u64().unwrap();
            assert!(correct <= 2, "{accuracy}");
        }
    }
    assert!(out.join("few-shot.png").exists() && out.join("report.html").exists());
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("| ra-cm3 with retrieval |"), "{markdown}");
}

// The diagnostic tasks on the fixture emoji, their train split held out for the test's sake:
// retrieval alone (each entity's caption finds it: its drawings are in the memory), the
// rows against the tokenizer floor, the copy probe for both models, and the oracle's
// context of the entity's own documents.
#[test]
fn eval_diagnostics_write_their_rows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().unwrap();
    let memory = work.path().join("memory");
    build_fixture_memory(&memory);
    let out = work.path().join("report");
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .current_dir(&root)
        .env("RACM3_HOME", fixtures())
        .env_remove("RACM3_FID_WEIGHTS")
        .args(["eval", "--ra", "checkpoints/cm3-emoji-small", "--baseline"])
        .args(["checkpoints/cm3-emoji-small-baseline", "--split", "train"])
        .args(["--tasks", "retrieval,diagnostics,oracle", "--seeds", "1"])
        .args(["--fid-weights", "/nonexistent", "--memory"])
        .arg(&memory)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        (
            report["split"].as_str(),
            report["held_out_entities"].as_u64()
        ),
        (Some("train"), Some(3))
    );
    let text = &report["retrieval"]["queries"]["text"];
    assert_eq!(text["same_entity_in_k"], 1.0, "{text}");
    let rows = &report["diagnostics"];
    for row in [
        "tokenizer_floor",
        "retrieval_only_raw",
        "retrieval_only_vqgan",
    ] {
        let clip_fid = rows[row]["clip_fid"]["mean"].as_f64().unwrap();
        assert!(
            clip_fid.is_finite() && clip_fid >= 0.0,
            "{row}: {}",
            rows[row]
        );
    }
    assert_eq!(rows["retrieval_only_caption"]["samples"], 3);
    for model in ["ra-cm3", "baseline"] {
        let probe = &rows["copy_probe"][model];
        assert_eq!(probe["documents"], 3, "{probe}");
        for setting in ["same_entity", "random", "none"] {
            let loss = probe["settings"][setting]["image"].as_f64().unwrap();
            assert!(loss > 0.0 && loss < 20.0, "{model} {setting}: {probe}");
        }
    }
    assert_eq!(report["oracle"]["entities_with_documents"], 3);
    assert_eq!(report["oracle"]["image_to_caption"]["samples"], 3);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in ["tokenizer floor", "Copy probe", "Retrieval alone", "oracle"] {
        assert!(markdown.contains(heading), "{heading}: {markdown}");
    }
}

// `metric clipscore` scores results against images named by image id, RefCLIPScore with
// references; a missing image is named.
#[test]
fn metric_clipscore_on_coco_files() {
    let work = tempfile::tempdir().unwrap();
    let emoji = fixtures().join("emoji/emoji-datasource-twitter-16.0.0/img/twitter/64");
    std::fs::copy(emoji.join("1f600.png"), work.path().join("7.png")).unwrap();
    std::fs::copy(emoji.join("1f34e.png"), work.path().join("8.png")).unwrap();
    let results = work.path().join("results.json");
    std::fs::write(
        &results,
        r#"[{"image_id": 7, "caption": "grinning face"}, {"image_id": 8, "caption": "red apple"}]"#,
    )
    .unwrap();
    let references = work.path().join("references.json");
    std::fs::write(
        &references,
        r#"{"annotations": [{"image_id": 7, "caption": "grinning face"}, {"image_id": 8, "caption": "red apple"}]}"#,
    )
    .unwrap();
    let clip = checkpoint("clip-emoji-small");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let args = [
        "metric".to_owned(),
        "clipscore".into(),
        "--results".into(),
        path(&results),
        "--images".into(),
        path(work.path()),
        "--clip".into(),
        path(&clip),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let scores = json(&racm3(
        &fixtures(),
        &[&args[..], &["--references", &path(&references), "--json"]].concat(),
    ));
    assert_eq!(scores["images"], 2);
    let each = scores["per_image"].as_array().unwrap();
    for image in each {
        let score = image["clip_score"].as_f64().unwrap();
        assert!((0.0..=2.5).contains(&score), "{scores}");
        assert!(image["ref_clip_score"].as_f64().is_some());
    }
    std::fs::remove_file(work.path().join("8.png")).unwrap();
    let missing = racm3(&fixtures(), &args);
    assert!(
        stderr(&missing).contains("no image for image_id 8"),
        "{}",
        stderr(&missing)
    );
}
