//! The `racm3` binary as a user runs it: output for people and for programs, help texts,
//! and errors that say what went wrong and what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

/// Runs racm3 with `home` as its cache folder.
fn racm3(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(args)
        .env("RACM3_HOME", home)
        .output()
        .expect("running racm3")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "racm3 failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("not JSON ({err}): {}", stdout(output));
    })
}

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
// both vendors, every entity in exactly one split, none shared between train and test.
#[test]
fn main_job_counts_the_real_emoji() {
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(["data", "stats", "--json"])
        .output()
        .unwrap();
    let stats = json(&output);
    assert_eq!(stats["dataset"], "emoji");
    assert_eq!(stats["documents"], 7572);
    assert_eq!(stats["entities"], 1911);
    assert_eq!(stats["vendors"]["twitter"], 3786);
    assert_eq!(stats["vendors"]["google"], 3786);
    assert_eq!(stats["entities_shared_train_test"], 0);
}

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

// The retrieval half end to end on the emoji fixture: `clip train` makes a loadable CLIP
// with a recall report, `memory build` stores every document with keys, `retrieve`
// ranks them best first, `memory add` skips stored ids, `memory remove` takes one out for
// good, and bad requests (k past the memory, a folder with no memory) say what is wrong.
#[test]
fn clip_memory_and_retrieve_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let home = fixtures();
    let clip = work.path().join("clip");
    let mem = work.path().join("mem");
    let (clip_arg, mem_arg) = (clip.to_str().unwrap(), mem.to_str().unwrap());
    let trained = racm3(
        &home,
        &[
            "clip",
            "train",
            "emoji",
            "--preset",
            "tiny",
            "--steps",
            "20",
            "--batch-size",
            "8",
            "--out",
            clip_arg,
        ],
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "loss.csv",
        "recall.json",
    ] {
        assert!(clip.join(file).exists(), "clip train wrote no {file}");
    }

    let built = racm3(
        &home,
        &[
            "memory", "build", "emoji", "--clip", clip_arg, "--out", mem_arg, "--index", "flat",
        ],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        stdout(&built).contains("added 16 documents") && stdout(&built).contains("documents/s"),
        "{}",
        stdout(&built)
    );

    let found = json(&racm3(
        &home,
        &[
            "retrieve",
            "--memory",
            mem_arg,
            "--text",
            "grinning face",
            "-k",
            "3",
            "--json",
        ],
    ));
    let rows = found.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let scores: Vec<f64> = rows
        .iter()
        .map(|row| row["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );
    assert!(
        rows.iter()
            .all(|row| row["id"].as_str().unwrap().starts_with("emoji/"))
    );

    // A threshold no document passes leaves nothing, and says so.
    let none = racm3(
        &home,
        &[
            "retrieve",
            "--memory",
            mem_arg,
            "--text",
            "grinning face",
            "--query-threshold=-1.5",
        ],
    );
    assert!(none.status.success());
    assert!(
        stderr(&none).contains("only 0 documents passed"),
        "{}",
        stderr(&none)
    );

    let again = racm3(&home, &["memory", "add", "emoji", "--memory", mem_arg]);
    assert!(
        stdout(&again).contains("added 0 documents")
            && stdout(&again).contains("skipped 16 already stored"),
        "{}",
        stdout(&again)
    );
    let victim = rows[0]["id"].as_str().unwrap().to_owned();
    let removed = racm3(&home, &["memory", "remove", &victim, "--memory", mem_arg]);
    assert!(
        stdout(&removed).contains("15 remain"),
        "{}",
        stdout(&removed)
    );
    let info = json(&racm3(&home, &["memory", "info", mem_arg, "--json"]));
    assert_eq!(info["documents"], 15);
    assert_eq!(info["index"], "flat");
    let all = json(&racm3(
        &home,
        &[
            "retrieve",
            "--memory",
            mem_arg,
            "--text",
            "grinning face",
            "-k",
            "15",
            "--query-threshold",
            "2",
            "--pairwise-threshold",
            "2",
            "--json",
        ],
    ));
    assert_eq!(all.as_array().unwrap().len(), 15);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|row| row["id"] != victim.as_str())
    );

    let too_many = racm3(
        &home,
        &[
            "retrieve", "--memory", mem_arg, "--text", "face", "-k", "16",
        ],
    );
    assert!(!too_many.status.success());
    assert!(
        stderr(&too_many).contains("1..=15"),
        "{}",
        stderr(&too_many)
    );
    let nowhere = racm3(&home, &["retrieve", "--memory", clip_arg, "--text", "face"]);
    assert!(
        stderr(&nowhere).contains("not a racm3 memory"),
        "{}",
        stderr(&nowhere)
    );
}

/// A flat memory of the fixture emoji at `memory`, keyed by the committed CLIP.
fn build_fixture_memory(memory: &Path) {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/clip-emoji-small");
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

// `racm3 train` records what it was trained with (train.json, read by `eval --variant`),
// names the query dropout in its retrieval cache, makes only the caches with --steps 0, and
// trains from those caches without the memory.
#[test]
fn train_records_its_settings_and_reuses_its_caches() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().unwrap();
    let memory = work.path().join("memory");
    let run = work.path().join("run");
    let clip = root.join("checkpoints/clip-emoji-small");
    let vqgan = root.join("checkpoints/vqgan-emoji64-f8");
    build_fixture_memory(&memory);
    let train = |memory: &Path, extra: &[&str]| {
        let common = [
            "train",
            "emoji",
            "--preset",
            "tiny",
            "--vqgan",
            vqgan.to_str().unwrap(),
            "--memory",
            memory.to_str().unwrap(),
            "-k",
            "1",
            "--query-dropout",
            "0",
            "--alpha",
            "0.5",
            "--batch-size",
            "2",
            "--out",
            run.to_str().unwrap(),
        ];
        racm3(&fixtures(), &[&common[..], extra].concat())
    };
    let prepared = train(&memory, &["--steps", "0"]);
    assert!(prepared.status.success(), "{}", stderr(&prepared));
    let caches: Vec<String> = std::fs::read_dir(run.join("corpus"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let codes = racm3::tokenize::vqgan::codes_fingerprint(&vqgan).unwrap();
    assert!(
        caches.contains(&format!("tokens-codes-{codes:08x}.json")),
        "{caches:?}"
    );
    assert!(run.join("corpus/retrieved-k1-dropout0.json").exists());
    assert!(
        !run.join("model.safetensors").exists(),
        "--steps 0 trains nothing"
    );

    let trained = train(&work.path().join("no-memory-here"), &["--steps", "2"]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(run.join("model.safetensors").exists());
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train.json")).unwrap()).unwrap();
    assert_eq!(settings["k"], 1);
    assert_eq!(settings["alpha"], 0.5);
    assert_eq!(settings["query_dropout"], 0.0);
    assert_eq!(settings["steps"], 2);

    let negative = racm3(
        &fixtures(),
        &[
            "train",
            "emoji",
            "--baseline",
            "--alpha=-1",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert!(!negative.status.success());
    assert!(
        stderr(&negative).contains("--alpha must be a finite weight"),
        "{}",
        stderr(&negative)
    );

    // A folder that racm3 train did not make is refused by name before anything loads.
    let variant = racm3(
        &fixtures(),
        &[
            "eval",
            "--ra",
            run.to_str().unwrap(),
            "--baseline",
            run.to_str().unwrap(),
            "--memory",
            memory.to_str().unwrap(),
            "--tasks",
            "training-ablation",
            "--variant",
            clip.to_str().unwrap(),
            "--out",
            work.path().join("report").to_str().unwrap(),
        ],
    );
    assert!(!variant.status.success());
    assert!(
        stderr(&variant).contains("train.json") && stderr(&variant).contains("--variant"),
        "{}",
        stderr(&variant)
    );
}

// The committed CLIP (checkpoints/clip-emoji-small) has learned the emoji: on the 698 val
// pairs, whose entities it never saw, text-to-image recall@10 is 0.46 where chance is 0.03.
#[test]
fn committed_clip_recalls_held_out_emoji() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/clip-emoji-small");
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args([
            "clip",
            "recall",
            "emoji",
            "--split",
            "val",
            "--json",
            "--clip",
            clip.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let recall = json(&output);
    assert_eq!(recall["pairs"], 698);
    let at_10 = recall["text_to_image"][2].as_f64().unwrap();
    assert!(at_10 > 0.4, "text-to-image recall@10 {at_10}");
    assert!(
        recall["image_to_text"][2].as_f64().unwrap() > 0.3,
        "{recall}"
    );
}

fn checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../checkpoints")
        .join(name)
}

// The tasks end to end on the fixture emoji: a memory keyed by the committed CLIP, a tiny
// generator trained for a few steps with retrieval, then generate, caption, infill and
// few-shot, each showing the retrieved documents; and the errors a user meets first.
#[test]
fn generation_tasks_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let home = fixtures();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_owned();
    let (mem, run) = (path("mem"), path("run"));
    let clip = checkpoint("clip-emoji-small");
    let vqgan = checkpoint("vqgan-emoji64-f8");
    let (clip, vqgan) = (clip.to_str().unwrap(), vqgan.to_str().unwrap());
    let built = racm3(
        &home,
        &[
            "memory", "build", "emoji", "--clip", clip, "--out", &mem, "--index", "flat",
        ],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let trained = racm3(
        &home,
        &[
            "train",
            "emoji",
            "--memory",
            &mem,
            "--vqgan",
            vqgan,
            "--preset",
            "tiny",
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--out",
            &run,
        ],
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    let model = [
        "--model",
        run.as_str(),
        "--vqgan",
        vqgan,
        "--memory",
        mem.as_str(),
    ];

    let (out, grid) = (path("face.png"), path("grid.png"));
    let generated = json(&racm3(
        &home,
        &[
            &[
                "generate",
                "--text",
                "grinning face",
                "--samples",
                "2",
                "--out",
                &out,
                "--grid",
                &grid,
                "--query-threshold",
                "1.5",
                "--json",
            ][..],
            &model,
        ]
        .concat(),
    ));
    let retrieved = generated["context"]["documents"].as_array().unwrap();
    assert_eq!(retrieved.len(), 2, "{generated}");
    assert!(retrieved[0]["score"].as_f64() >= retrieved[1]["score"].as_f64());
    assert!(retrieved[0]["caption"].as_str().unwrap().contains("face"));
    let samples = generated["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples[0]["clip_similarity"].as_f64() >= samples[1]["clip_similarity"].as_f64());
    assert!(
        samples
            .iter()
            .all(|s| s["codes"].as_array().unwrap().len() == 64)
    );
    assert_eq!(image::image_dimensions(&out).unwrap(), (64, 64));
    assert_eq!(image::image_dimensions(&grid).unwrap(), (128, 64));

    let verbose = racm3(
        &home,
        &[&["caption", &out, "--verbose"][..], &model].concat(),
    );
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    assert!(
        stderr(&verbose).contains("retrieved 1:") || stderr(&verbose).contains("near copies"),
        "{}",
        stderr(&verbose)
    );
    let infilled = json(&racm3(
        &home,
        &[
            &["infill", &out, "--caption", "grinning <mask>", "--json"][..],
            &model,
        ]
        .concat(),
    ));
    assert!(
        infilled["samples"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("grinning"),
        "{infilled}"
    );
    let redrawn = path("redrawn.png");
    let rows = racm3(
        &home,
        &[
            &[
                "infill",
                &out,
                "--caption",
                "grinning face",
                "--rows",
                "4..8",
                "--out",
                &redrawn,
            ][..],
            &model,
        ]
        .concat(),
    );
    assert!(rows.status.success(), "{}", stderr(&rows));
    assert_eq!(image::image_dimensions(&redrawn).unwrap(), (64, 64));
    let demo_a = format!("{out}=wug");
    let demo_b = format!("{redrawn}=dax");
    let answer = json(&racm3(
        &home,
        &[
            &[
                "few-shot", "--demo", &demo_a, "--demo", &demo_b, "--query", &out, "--json", "-k",
                "0",
            ][..],
            &model,
        ]
        .concat(),
    ));
    let label = answer["label"].as_str().unwrap();
    assert!(label == "wug" || label == "dax", "{answer}");
    assert_eq!(answer["scores"].as_array().unwrap().len(), 2);

    let nothing = racm3(
        &home,
        &[&["infill", &out, "--caption", "grinning face"][..], &model].concat(),
    );
    assert!(
        stderr(&nothing).contains("nothing to fill"),
        "{}",
        stderr(&nothing)
    );
    let huge_k = racm3(
        &home,
        &[&["generate", "--text", "x", "-k", "1000000000"][..], &model].concat(),
    );
    assert!(
        stderr(&huge_k).contains("-k must be at most 16"),
        "{}",
        stderr(&huge_k)
    );
    let unlabeled = racm3(&home, &["few-shot", "--demo", &out, "--query", &out]);
    assert!(
        stderr(&unlabeled).contains("is not IMAGE=LABEL"),
        "{}",
        stderr(&unlabeled)
    );
    let not_an_image = racm3(
        &home,
        &[&["caption", &format!("{run}/config.json")][..], &model].concat(),
    );
    assert!(
        !not_an_image.status.success() && stderr(&not_an_image).contains("config.json"),
        "{}",
        stderr(&not_an_image)
    );
    let no_model = racm3(
        &home,
        &[
            "generate",
            "--text",
            "x",
            "--model",
            &path("missing"),
            "--vqgan",
            vqgan,
        ],
    );
    assert!(
        stderr(&no_model).contains("missing"),
        "{}",
        stderr(&no_model)
    );
}

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
