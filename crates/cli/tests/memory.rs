//! `racm3 clip`, `memory`, `retrieve` and `train` from the command line on the fixture
//! emoji, and the committed CLIP on the real ones.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

// The retrieval half end to end on the emoji fixture: `clip train` makes a loadable CLIP
// with a recall report, `memory build` stores every document with keys, `retrieve`
// ranks them best first, `memory add` skips stored ids, `memory remove` takes one out for
// good, and a k past the memory returns what there is, and a folder with no memory is named.
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
        stdout(&built).contains("added 37 documents") && stdout(&built).contains("documents/s"),
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
            && stdout(&again).contains("skipped 37 already stored"),
        "{}",
        stdout(&again)
    );
    let victim = rows[0]["id"].as_str().unwrap().to_owned();
    let removed = racm3(&home, &["memory", "remove", &victim, "--memory", mem_arg]);
    assert!(
        stdout(&removed).contains("36 remain"),
        "{}",
        stdout(&removed)
    );
    let info = json(&racm3(&home, &["memory", "info", mem_arg, "--json"]));
    assert_eq!(info["documents"], 36);
    assert_eq!(info["index"], "flat");
    // Every document, near copies and all.
    let retrieve_all = || {
        json(&racm3(
            &home,
            &[
                "retrieve",
                "--memory",
                mem_arg,
                "--text",
                "grinning face",
                "-k",
                "36",
                "--query-threshold",
                "2",
                "--pairwise-threshold",
                "2",
                "--json",
            ],
        ))
    };
    let all = retrieve_all();
    assert_eq!(all.as_array().unwrap().len(), 36);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|row| row["id"] != victim.as_str())
    );
    // Compaction drops the removed document's record and answers the same.
    let compacted = json(&racm3(
        &home,
        &["memory", "compact", "--memory", mem_arg, "--json"],
    ));
    assert_eq!(compacted["removed_dropped"], 1, "{compacted}");
    assert_eq!(compacted["documents"], 36, "{compacted}");
    assert_eq!(compacted["segments_after"], 1, "{compacted}");
    let after = retrieve_all();
    let ids = |rows: &serde_json::Value| -> Vec<String> {
        let rows = rows.as_array().unwrap();
        rows.iter().map(|row| row["id"].to_string()).collect()
    };
    assert_eq!(ids(&after), ids(&all));

    // k past the memory's 36 documents returns all 36 (clamped in retrieval, for every
    // caller).
    let too_many = racm3(
        &home,
        &[
            "retrieve",
            "--memory",
            mem_arg,
            "--text",
            "face",
            "-k",
            "37",
            "--query-threshold",
            "2",
            "--pairwise-threshold",
            "2",
            "--json",
        ],
    );
    assert_eq!(json(&too_many).as_array().unwrap().len(), 36);
    let nowhere = racm3(&home, &["retrieve", "--memory", clip_arg, "--text", "face"]);
    assert!(
        stderr(&nowhere).contains("not a racm3 memory"),
        "{}",
        stderr(&nowhere)
    );

    // Joint+image keys: twice the values, and a drawing as the query finds the document
    // that holds that very drawing first, at cosine 1, image against image.
    let build_keyed = |out: &str, keys: &str| {
        racm3(
            &home,
            &[
                "memory", "build", "emoji", "--clip", clip_arg, "--out", out, "--keys", keys,
                "--index", "flat",
            ],
        )
    };
    let images = work.path().join("images");
    let images_arg = images.to_str().unwrap();
    let built = build_keyed(images_arg, "joint+image");
    assert!(built.status.success(), "{}", stderr(&built));
    let joint_dim = json(&racm3(&home, &["memory", "info", mem_arg, "--json"]))["dim"].clone();
    let info = json(&racm3(&home, &["memory", "info", images_arg, "--json"]));
    assert_eq!(
        info["dim"].as_u64().unwrap(),
        2 * joint_dim.as_u64().unwrap(),
        "{info}"
    );
    assert_the_apple_finds_itself(&home, images_arg);
    let unknown = build_keyed("unused", "pixels");
    assert!(
        stderr(&unknown).contains("unknown key layout 'pixels'"),
        "{}",
        stderr(&unknown)
    );

    // Joint+pixels keys need the CLIP folder's pixel keys, which `clip fit-pixel-keys`
    // fits on the train split and saves there; then a drawing finds itself by them.
    let pixels = work.path().join("pixels");
    let pixels_arg = pixels.to_str().unwrap();
    let refused = build_keyed(pixels_arg, "joint+pixels");
    assert!(
        !refused.status.success() && stderr(&refused).contains("fit-pixel-keys"),
        "{}",
        stderr(&refused)
    );
    let not_clip = racm3(
        &home,
        &["clip", "fit-pixel-keys", "emoji", "--clip", mem_arg],
    );
    assert!(
        stderr(&not_clip).contains("not a CLIP folder"),
        "{}",
        stderr(&not_clip)
    );
    let fitted = racm3(
        &home,
        &[
            "clip",
            "fit-pixel-keys",
            "emoji",
            "--clip",
            clip_arg,
            "--side",
            "8",
            "--dims",
            "8",
        ],
    );
    assert!(fitted.status.success(), "{}", stderr(&fitted));
    assert!(clip.join("pixel-keys.safetensors").is_file());
    let built = build_keyed(pixels_arg, "joint+pixels");
    assert!(built.status.success(), "{}", stderr(&built));
    let info = json(&racm3(&home, &["memory", "info", pixels_arg, "--json"]));
    assert_eq!(
        info["dim"].as_u64().unwrap(),
        joint_dim.as_u64().unwrap() + 8,
        "{info}"
    );
    assert_the_apple_finds_itself(&home, pixels_arg);
}

/// The fixture's Twemoji apple as the query, no skips: the memory's document of that very
/// drawing comes first, at cosine 1.
fn assert_the_apple_finds_itself(home: &Path, memory: &str) {
    let drawing = home.join("emoji/emoji-datasource-twitter-16.0.0/img/twitter/64/1f34e.png");
    let found = json(&racm3(
        home,
        &[
            "retrieve",
            "--memory",
            memory,
            "--image",
            drawing.to_str().unwrap(),
            "-k",
            "1",
            "--query-threshold",
            "2",
            "--json",
        ],
    ));
    let top = &found.as_array().unwrap()[0];
    assert_eq!(top["id"], "emoji/twitter/1f34e", "{found}");
    assert!(
        (top["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{found}"
    );
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

    let trained = train(
        &work.path().join("no-memory-here"),
        &[
            "--steps",
            "2",
            "--image-positions",
            "--image-copy",
            "--caption-copy",
        ],
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(run.join("model.safetensors").exists());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["image_positions"]["grid"], 64, "{config}");
    let copy = &config["image_copy"];
    assert_eq!(copy["sources"], 1, "{config}");
    assert_eq!(copy["pointer"], true, "{config}");
    assert_eq!(copy["images"], true, "{config}");
    assert!(copy["captions"]["alt"].is_u64(), "{config}");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train.json")).unwrap()).unwrap();
    assert_eq!(settings["k"], 1);
    assert_eq!(settings["alpha"], 0.5);
    assert_eq!(settings["query_dropout"], 0.0);
    assert_eq!(settings["steps"], 2);
    assert_eq!(settings["image_positions"], true);
    assert_eq!(settings["image_copy"], true);
    assert_eq!(settings["caption_copy"], true);

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

// The committed CLIP (checkpoints/clip-emoji-small) has learned the emoji: on the 1539 val
// pairs of the five renditions, whose entities it never saw (nor three of the renditions),
// text-to-image recall@10 is 0.44 where chance is 0.007, and a drawing finds its entity in
// another rendition among the first 10 for 0.55 of the images.
#[test]
fn committed_clip_recalls_held_out_emoji() {
    if !racm3_testing::external("committed_clip_recalls_held_out_emoji") {
        return;
    }
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
    assert_eq!(recall["pairs"], 1539);
    let at_10 = recall["text_to_image"][2].as_f64().unwrap();
    assert!(at_10 > 0.4, "text-to-image recall@10 {at_10}");
    assert!(
        recall["image_to_text"][2].as_f64().unwrap() > 0.15,
        "{recall}"
    );
    let entity = &recall["entity"];
    assert_eq!(
        (entity["texts"].as_u64(), entity["images"].as_u64()),
        (Some(349), Some(1539))
    );
    assert!(
        entity["text_to_entity"][2].as_f64().unwrap() > 0.4,
        "{entity}"
    );
    assert!(
        entity["image_to_other_rendition"][2].as_f64().unwrap() > 0.5,
        "{entity}"
    );
    // The committed pixel keys find another rendition far more often (0.671 measured).
    assert!(
        entity["image_to_other_rendition_by_pixels"][1]
            .as_f64()
            .unwrap()
            > 0.6,
        "{entity}"
    );
}

// Three `memory add` processes started at once on one memory, one of them with --wait:
// each either adds its documents or is refused by name, the waiting one always adds, and
// the memory ends holding every document an add acknowledged.
#[test]
fn concurrent_adds_from_the_command_line_lose_nothing() {
    let work = tempfile::tempdir().unwrap();
    let mem = work.path().join("mem");
    let clip = checkpoint("clip-emoji-small");
    let (mem_arg, clip_arg) = (mem.to_str().unwrap(), clip.to_str().unwrap());
    let built = racm3(
        &fixtures(),
        &[
            "memory",
            "build",
            "emoji-twitter",
            "--index",
            "hnsw16",
            "--clip",
            clip_arg,
            "--out",
            mem_arg,
        ],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let stored = |output: &std::process::Output| -> usize {
        let out = stdout(output);
        let added = out
            .split("added ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        added.unwrap_or_else(|| panic!("{out}")).parse().unwrap()
    };
    let base = stored(&built);
    let adds = [
        ("emoji-google", false),
        ("emoji-openmoji", false),
        ("emoji-fluent", true),
    ];
    let children: Vec<_> = adds
        .iter()
        .map(|(dataset, wait)| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_racm3"));
            command
                .args(["memory", "add", dataset, "--memory", mem_arg])
                .env("RACM3_HOME", fixtures());
            if *wait {
                command.arg("--wait");
            }
            command.stdout(std::process::Stdio::piped());
            command.stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let mut acknowledged = base;
    for ((dataset, wait), child) in adds.iter().zip(children) {
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            acknowledged += stored(&output);
        } else {
            assert!(!wait, "{dataset} --wait failed: {}", stderr(&output));
            assert!(
                stderr(&output).contains("another process is writing to this memory"),
                "{dataset}: {}",
                stderr(&output)
            );
        }
    }
    let info = json(&racm3(&fixtures(), &["memory", "info", mem_arg, "--json"]));
    assert_eq!(info["documents"], acknowledged, "{info}");
    assert!(acknowledged > base);
}
