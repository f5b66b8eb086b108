//! CLIPScore, RefCLIPScore and CLIP-FID with the committed CLIP on the fixture emoji.

use std::path::Path;

use racm3::data::{Dataset, Home, OnBadSample, Silent};
use racm3::retrieve::ClipEncoder;
use racm3::scores::{clip_fid, clip_score, ref_clip_score};

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
