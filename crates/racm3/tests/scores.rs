//! CLIPScore, RefCLIPScore and CLIP-FID with the committed CLIP on the fixture emoji, and the
//! tokenizer floor (FID of images against their VQGAN reconstructions).

use std::path::Path;

use racm3::data::{Dataset, Home, OnBadSample, Silent};
use racm3::retrieve::ClipEncoder;
use racm3::scores::{clip_fid, clip_score, fid_between, reconstruction_distance, ref_clip_score};
use racm3::tokenize::vqgan::ImageTokenizer;

fn setup() -> (ClipEncoder, Vec<image::RgbImage>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let clip = ClipEncoder::load(
        &root.join("checkpoints/clip-emoji-small"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let home = Home::new(root.join("tests/fixtures/data"));
    let documents = Dataset::resolve("emoji-twitter", &home)
        .unwrap()
        .load(OnBadSample::Fail, &Silent)
        .unwrap()
        .documents;
    let images = documents
        .iter()
        .map(|d| d.images().next().unwrap().pixels.clone())
        .collect();
    let captions = documents.iter().map(|d| d.caption()).collect();
    (clip, images, captions)
}

// Right captions score higher than shuffled ones, every score is 2.5 · max(cos, 0) with
// the "A photo depicts " prompt, and a caption that is its own reference scores at least
// as well under RefCLIPScore as under CLIPScore's harmonic partner.
#[test]
fn clip_scores_prefer_the_right_captions() {
    let (clip, images, captions) = setup();
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let right = clip_score(&clip, &images, &refs).unwrap();
    let mut shifted = refs.clone();
    shifted.rotate_left(3);
    let wrong = clip_score(&clip, &images, &shifted).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&right) > mean(&wrong),
        "{} vs {}",
        mean(&right),
        mean(&wrong)
    );
    assert!(right.iter().all(|&s| (0.0..=2.5).contains(&s)));
    let text = clip
        .embed_texts(&[&format!("A photo depicts {}", refs[0])])
        .unwrap();
    let image = clip.embed_images(&images[..1]).unwrap();
    let cos: f32 = text.iter().zip(&image).map(|(a, b)| a * b).sum();
    assert!((right[0] - 2.5 * f64::from(cos).max(0.0)).abs() < 1e-6);

    let references: Vec<Vec<String>> = captions.iter().map(|c| vec![c.clone()]).collect();
    let with_refs = ref_clip_score(&clip, &images, &refs, &references).unwrap();
    for (r, c) in with_refs.iter().zip(&right) {
        // The text-text term is cos(c, c) = 1, so the harmonic mean is 2c / (c + 1).
        assert!((r - 2.0 * c / (c + 1.0)).abs() < 1e-5, "{r} vs {c}");
    }
    let err = clip_score(&clip, &images, &refs[..2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("images but 2 captions"), "{err}");
}

// CLIP-FID is about zero for a set against itself and grows for another set.
#[test]
fn clip_fid_separates_sets() {
    let (clip, images, _) = setup();
    let (first, second) = images.split_at(images.len() / 2);
    let same = clip_fid(&clip, first, first).unwrap();
    let other = clip_fid(&clip, first, second).unwrap();
    assert!(same.abs() < 1e-6 && other > 0.01, "{same} {other}");
}

// The tokenizer floor is FID and KID between the images and their reconstructions: the same
// figures as `racm3 metric fid` on folders of the two, and the committed VQGAN, trained on
// emoji, sits nearer the drawings than the untrained-size taming fixture model.
#[test]
fn reconstruction_distance_is_the_fid_of_the_reconstructions() {
    let (_, images, _) = setup();
    let root = racm3_testing::repo_root();
    let weights = racm3_testing::fid_weights();
    let load =
        |dir: &str| ImageTokenizer::load(&root.join(dir), &candle_core::Device::Cpu).unwrap();
    let committed = load("checkpoints/vqgan-emoji64-f8");
    let floor = reconstruction_distance(&committed, &images, &weights).unwrap();

    let folders = tempfile::tempdir().unwrap();
    let reconstructed = committed
        .decode(&committed.encode(&images, 32).unwrap())
        .unwrap();
    for (name, set) in [("real", &images), ("reconstructed", &reconstructed)] {
        let dir = folders.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for (i, image) in set.iter().enumerate() {
            image.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
    }
    let from_files = fid_between(
        &folders.path().join("real"),
        &folders.path().join("reconstructed"),
        &weights,
    )
    .unwrap();
    assert_eq!(floor.samples, (images.len(), images.len()));
    assert!(
        (floor.fid - from_files.fid).abs() < 1e-3 * floor.fid.max(1.0),
        "{floor:?} {from_files:?}"
    );
    assert!(
        (floor.kid - from_files.kid).abs() < 1e-4,
        "{floor:?} {from_files:?}"
    );

    let tiny = load("tests/fixtures/vqgan/taming-tiny");
    let far = reconstruction_distance(&tiny, &images, &weights).unwrap();
    assert!(far.fid > floor.fid, "{far:?} against {floor:?}");
}
