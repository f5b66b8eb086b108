//! RA-CM3's tasks from the command line: generate, caption, infill and few-shot.

mod common;

use common::*;

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
        stderr(&huge_k).contains("k must be at most 16"),
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
