//! Pixel keys: fitted on renditions labelled by entity, a new rendition of an entity finds
//! that entity; keys are unit vectors of any image size; saving keeps them; bad options and
//! bad files are clear errors.

use image::{Rgb, RgbImage};
use racm3_retrieve::{PixelKeyOptions, PixelKeys};

/// Entity `entity`'s picture (a colour and a shape) in rendition `style`: each style has
/// its own background tint, size and offset, as emoji vendors draw one thing differently.
fn rendition(entity: usize, style: usize, size: u32) -> RgbImage {
    const COLOURS: [[u8; 3]; 4] = [[220, 30, 30], [30, 170, 40], [30, 60, 220], [230, 200, 20]];
    let colour = COLOURS[entity % 4];
    let stripe = entity >= 4;
    let background = [255 - 20 * style as u8, 255 - 12 * style as u8, 255];
    let half = [18.0, 14.0, 16.0, 12.0][style % 4] * size as f32 / 64.0;
    let offset = [0.0, 3.0, -3.0, 2.0][style % 4] * size as f32 / 64.0;
    let center = size as f32 / 2.0 + offset;
    RgbImage::from_fn(size, size, |x, y| {
        let (dx, dy) = ((x as f32 - center).abs(), (y as f32 - center).abs());
        let inside = if stripe {
            dy < half / 3.0 && dx < half * 1.5
        } else {
            dx < half && dy < half
        };
        Rgb(if inside { colour } else { background })
    })
}

fn options() -> PixelKeyOptions {
    PixelKeyOptions {
        side: 8,
        dims: 6,
        ..PixelKeyOptions::default()
    }
}

fn fitted() -> PixelKeys {
    let (mut images, mut entities) = (Vec::new(), Vec::new());
    for entity in 0..8 {
        for style in 0..3 {
            images.push(rendition(entity, style, 64));
            entities.push(format!("e{entity}"));
        }
    }
    let labels: Vec<&str> = entities.iter().map(String::as_str).collect();
    PixelKeys::fit(&images, &labels, options()).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn a_new_rendition_finds_its_entity() {
    let keys = fitted();
    assert_eq!((keys.side(), keys.dims()), (8, 6));
    let memory: Vec<RgbImage> = (0..8).map(|entity| rendition(entity, 0, 64)).collect();
    let memory_keys = keys.embed(&memory).unwrap();
    // Style 3 was never fitted on: another tint, size and offset; and a 96-pixel image.
    for size in [64, 96] {
        let queries: Vec<RgbImage> = (0..8).map(|entity| rendition(entity, 3, size)).collect();
        let query_keys = keys.embed(&queries).unwrap();
        for (entity, query) in query_keys.chunks_exact(6).enumerate() {
            assert!((dot(query, query) - 1.0).abs() < 1e-5, "a unit key");
            let scores: Vec<f32> = memory_keys
                .chunks_exact(6)
                .map(|key| dot(query, key))
                .collect();
            let best = (0..8)
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap();
            assert_eq!(best, entity, "size {size}, scores {scores:?}");
        }
    }
}

#[test]
fn saved_keys_embed_the_same_and_bad_files_are_named() {
    let keys = fitted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pixel-keys.safetensors");
    keys.save(&path).unwrap();
    let loaded = PixelKeys::load(&path).unwrap();
    let images = [rendition(2, 1, 64)];
    assert_eq!(keys.embed(&images).unwrap(), loaded.embed(&images).unwrap());

    std::fs::write(&path, b"not safetensors").unwrap();
    let error = PixelKeys::load(&path).unwrap_err().to_string();
    assert!(error.contains("pixel-keys.safetensors"), "{error}");
    let wrong = std::collections::HashMap::from([
        (
            "center".to_owned(),
            candle_core::Tensor::zeros(10, candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
        (
            "projection".to_owned(),
            candle_core::Tensor::zeros((10, 2), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&wrong, &path).unwrap();
    let error = PixelKeys::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("pixel-keys.safetensors") && error.contains("[10]"),
        "{error}"
    );
}

#[test]
fn bad_options_and_labels_are_errors() {
    let images: Vec<RgbImage> = (0..4).map(|i| rendition(i % 2, i / 2, 64)).collect();
    let labels = ["a", "b", "a", "b"];
    for bad in [
        PixelKeyOptions {
            dims: 0,
            ..options()
        },
        PixelKeyOptions {
            dims: 3 * 8 * 8 + 1,
            ..options()
        },
        PixelKeyOptions {
            side: 0,
            ..options()
        },
        PixelKeyOptions {
            regularization: 0.0,
            ..options()
        },
        PixelKeyOptions {
            regularization: f64::NAN,
            ..options()
        },
        PixelKeyOptions {
            zoom: 0.7,
            ..options()
        },
    ] {
        assert!(PixelKeys::fit(&images, &labels, bad).is_err(), "{bad:?}");
    }
    // One entity, every image its own entity, or labels that do not match the images.
    assert!(PixelKeys::fit(&images, &["a"; 4], options()).is_err());
    assert!(PixelKeys::fit(&images, &["a", "b", "c", "d"], options()).is_err());
    assert!(PixelKeys::fit(&images, &labels[..3], options()).is_err());
    assert!(PixelKeys::fit(&images, &labels, options()).is_ok());
}
