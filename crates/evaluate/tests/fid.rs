//! FID against its references: the Inception features of three committed pictures within
//! 1e-3 (relative) of the TorchScript network's, and the Frechet distance of two committed
//! feature sets within 1e-6 of pytorch-fid's scipy formula (tools/make_fid_fixture.py).

use std::path::{Path, PathBuf};

use racm3_evaluate::fid::{
    InceptionFid, Statistics, fid_of_npy, frechet_distance, frechet_distance_of_samples,
    kernel_inception_distance, read_npy,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/fid")
        .join(name)
}

fn expected(key: &str) -> f64 {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    json[key].as_f64().unwrap()
}

#[test]
fn frechet_distance_matches_scipy() {
    let fid = fid_of_npy(&fixture("set_a.npy"), &fixture("set_b.npy")).unwrap();
    let want = expected("fid_a_b");
    assert!((fid - want).abs() < 1e-6, "{fid} vs {want}");
    let same = fid_of_npy(&fixture("set_a.npy"), &fixture("set_a.npy")).unwrap();
    assert!(same.abs() < 1e-6, "{same}");

    // Fewer samples than dimensions: the n × m route equals the d × d one (up to the
    // rounding of the d × d route, whose rank-deficient square root clamps tiny
    // negative eigenvalues).
    let (a, _, dim) = read_npy(&fixture("set_a.npy")).unwrap();
    let (b, _, _) = read_npy(&fixture("set_b.npy")).unwrap();
    let (a, b) = (&a[..20 * dim], &b[..25 * dim]);
    let by_samples = frechet_distance_of_samples(a, b, dim).unwrap();
    let by_covariance = frechet_distance(
        &Statistics::of_f64(a, dim, "a").unwrap(),
        &Statistics::of_f64(b, dim, "b").unwrap(),
    )
    .unwrap();
    assert!(
        (by_samples - by_covariance).abs() < 1e-6 * by_covariance.abs().max(1.0),
        "{by_samples} vs {by_covariance}"
    );
}

#[test]
fn inception_features_match_torchscript() {
    if !racm3_testing::external("inception_features_match_torchscript") {
        return;
    }
    let inception =
        InceptionFid::load(&racm3_testing::fid_weights(), &candle_core::Device::Cpu).unwrap();
    let images: Vec<image::RgbImage> = (0..3)
        .map(|i| {
            image::open(fixture(&format!("images/{i}.png")))
                .unwrap()
                .to_rgb8()
        })
        .collect();
    let ours = inception.features(&images, 2).unwrap();
    let (theirs, rows, dim) = read_npy(&fixture("features.npy")).unwrap();
    assert_eq!((rows, dim), (3, 2048));
    for (row, (a, b)) in ours.chunks(dim).zip(theirs.chunks(dim)).enumerate() {
        let norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        let error = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).powi(2))
            .sum::<f64>()
            .sqrt();
        eprintln!("image {row}: relative error {:.2e}", error / norm);
        assert!(
            error / norm < 1e-3,
            "image {row}: relative error {}",
            error / norm
        );
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-3 * b.iter().fold(0.0f64, |m, v| m.max(v.abs())),
            "image {row}: {worst}"
        );
    }
}

// Too few samples, NaN features, mismatched widths and a file that is not .npy each get
// an error naming the problem; KID separates a shifted set from a fresh sample.
#[test]
fn bad_input_and_kid() {
    let one = Statistics::of(&[1.0, 2.0], 2, "tiny set")
        .unwrap_err()
        .to_string();
    assert!(
        one.contains("tiny set") && one.contains("at least 2"),
        "{one}"
    );
    let nan = Statistics::of(&[1.0, f32::NAN, 0.0, 1.0], 2, "set")
        .unwrap_err()
        .to_string();
    assert!(nan.contains("feature 1 of sample 0 is not finite"), "{nan}");
    let a = Statistics::of(&[0.0, 1.0, 2.0, 3.0, 1.0, 1.0], 2, "a").unwrap();
    let b = Statistics::of(&[0.0, 1.0, 2.0, 3.0, 1.0, 1.0], 3, "b").unwrap();
    let err = frechet_distance(&a, &b).unwrap_err().to_string();
    assert!(err.contains("2 and 3 dimensions"), "{err}");
    let err = read_npy(&fixture("expected.json")).unwrap_err().to_string();
    assert!(
        err.contains("expected.json") && err.contains("not a .npy"),
        "{err}"
    );

    let (set_a, _, dim) = read_npy(&fixture("set_a.npy")).unwrap();
    // Scaled so that x·y/d is of order 1, as for Inception features.
    let a: Vec<f32> = set_a.iter().map(|&v| v as f32 / 8.0).collect();
    let (first, second) = a.split_at(150 * dim);
    let moved: Vec<f32> = second.iter().map(|v| v + 1.0).collect();
    let same = kernel_inception_distance(first, second, dim).unwrap();
    let shifted = kernel_inception_distance(first, &moved, dim).unwrap();
    assert!(shifted > 10.0 * same.abs(), "{shifted} vs {same}");
}
