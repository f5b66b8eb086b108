//! Each reader on the small committed fixtures (made from the real packages by
//! tools/make_data_fixtures.py), and each kind of bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use racm3_data::emoji::renditions::{self, Coverage};
use racm3_data::emoji::{EmojiDataset, Vendor, svg};
use racm3_data::fashion_mnist::FashionMnist;
use racm3_data::{Dataset, Error, Home, OnBadSample, Silent, Split};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn messages(errors: &[Error]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

// Every rendition's documents load with CLDR skin-tone captions, and every variant of an
// entity (tones, renditions) lands in the same split.
#[test]
fn emoji_reads_every_rendition_and_splits_by_entity() {
    let dataset = EmojiDataset::from_fetched(&fixtures().join("emoji"), &Vendor::ALL).unwrap();
    let loaded = dataset.load(OnBadSample::Fail, &Silent).unwrap();
    // Red apple, waving hand and its 5 tones, grinning face: all 8 from Twemoji, Noto and
    // Noto v1; the fixture OpenMoji package lacks two tones and Fluent one.
    assert_eq!(loaded.documents.len(), 8 + 8 + 6 + 7 + 8);
    let by_id: BTreeMap<&str, _> = loaded.documents.iter().map(|d| (d.id(), d)).collect();
    let apple = by_id["emoji/twitter/1f34e"];
    assert_eq!(apple.caption(), "red apple");
    assert_eq!(apple.source.attributes["vendor"], "twitter");
    assert_eq!(apple.source.attributes["category"], "Food & Drink");
    assert_eq!(apple.source.references, vec!["apple"]);
    let image = apple.images().next().unwrap();
    assert_eq!(image.pixels.dimensions(), (64, 64));
    assert_eq!(
        by_id["emoji/google/1f44b-1f3fd"].caption(),
        "waving hand sign: medium skin tone"
    );
    let mut split_of_entity: BTreeMap<&str, Split> = BTreeMap::new();
    for doc in &loaded.documents {
        let split = *split_of_entity
            .entry(&doc.source.entity)
            .or_insert(doc.source.split);
        assert_eq!(
            split,
            doc.source.split,
            "{} left its entity's split",
            doc.id()
        );
    }
    assert_eq!(split_of_entity.len(), 3);
    // The two vendors draw the same entity differently.
    assert_ne!(
        image.pixels,
        by_id["emoji/google/1f34e"].images().next().unwrap().pixels
    );
}

// An emoji package whose image is missing, or whose emoji.json is malformed, names the file.
#[test]
fn emoji_bad_package_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("emoji-datasource-twitter-16.0.0");
    let source = fixtures().join("emoji/emoji-datasource-twitter-16.0.0/emoji.json");
    std::fs::create_dir_all(package.join("img/twitter/64")).unwrap();
    std::fs::copy(&source, package.join("emoji.json")).unwrap();
    let dataset = EmojiDataset::from_fetched(dir.path(), &[Vendor::Twitter]).unwrap();
    let err = dataset.load(OnBadSample::Fail, &Silent).unwrap_err();
    assert!(
        err.to_string().contains("img/twitter/64/1f34e.png"),
        "{err}"
    );
    let skipped = dataset.load(OnBadSample::Skip, &Silent).unwrap();
    assert_eq!((skipped.documents.len(), skipped.skipped.len()), (0, 8));

    std::fs::write(package.join("emoji.json"), "[{\"name\": ").unwrap();
    let err = dataset.load(OnBadSample::Skip, &Silent).unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err}");
    assert!(
        err.to_string().contains("emoji.json: malformed JSON"),
        "{err}"
    );
}

// Fashion-MNIST: class-name captions, labels kept, the official test set as test and
// every tenth training image as val.
#[test]
fn fashion_mnist_reads_idx_files() {
    let loaded = FashionMnist::new(fixtures().join("fashion-mnist"))
        .load(OnBadSample::Fail, &Silent)
        .unwrap();
    assert_eq!(loaded.documents.len(), 30);
    let first = &loaded.documents[0];
    assert_eq!(first.id(), "fashion-mnist/train/00000");
    // The first training image of Fashion-MNIST is an ankle boot (label 9).
    assert_eq!(first.caption(), "ankle boot");
    assert_eq!(first.source.attributes["label"], "9");
    assert_eq!(first.images().next().unwrap().pixels.dimensions(), (28, 28));
    let count = |split| {
        loaded
            .documents
            .iter()
            .filter(|d| d.source.split == split)
            .count()
    };
    assert_eq!(
        (count(Split::Train), count(Split::Val), count(Split::Test)),
        (18, 2, 10)
    );
}

// A truncated IDX file is an error naming it, under either policy.
#[test]
fn fashion_mnist_truncated_idx_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(
            fixtures().join("fashion-mnist").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    let gz = std::fs::read(fixtures().join("fashion-mnist/train-images-idx3-ubyte.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        &raw[..raw.len() - 100],
    )
    .unwrap();
    let err = FashionMnist::new(dir.path())
        .load(OnBadSample::Skip, &Silent)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("train-images-idx3-ubyte: holds 15580 data bytes"),
        "{message}"
    );
}

// A folder in img2dataset's layout: PNG and JPEG, a shard subfolder, extra files ignored.
#[test]
fn folder_of_pairs_reads_every_pair() {
    let loaded = Dataset::resolve(
        fixtures().join("pairs").to_str().unwrap(),
        &Home::new("/none"),
    )
    .unwrap()
    .load(OnBadSample::Fail, &Silent)
    .unwrap();
    let found: Vec<(&str, String)> = loaded
        .documents
        .iter()
        .map(|d| (d.id(), d.caption()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("pairs/00000", "grinning face".to_owned()),
            ("pairs/00001", "red apple".to_owned()),
            ("pairs/00001/00002", "waving hand".to_owned()),
        ]
    );
    assert!(loaded.skipped.is_empty());
}

// Each bad sample fails the read with its file named, or is skipped and counted.
#[test]
fn folder_bad_samples_fail_or_are_counted() {
    let dataset = Dataset::resolve(
        fixtures().join("bad-pairs").to_str().unwrap(),
        &Home::new("/none"),
    )
    .unwrap();
    let err = dataset.load(OnBadSample::Fail, &Silent).unwrap_err();
    assert!(matches!(err, Error::CaptionNotUtf8 { .. }), "{err}");
    let loaded = dataset.load(OnBadSample::Skip, &Silent).unwrap();
    assert_eq!(loaded.documents.len(), 1);
    let skipped = messages(&loaded.skipped);
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    for expected in [
        "latin1.txt: caption is not valid UTF-8",
        "nocaption.png: no caption beside it (expected nocaption.txt)",
        "notajpeg.jpg: not a readable image",
        "truncated.png: not a readable image",
    ] {
        assert!(
            skipped.iter().any(|m| m.contains(expected)),
            "{expected} not in {skipped:?}"
        );
    }
}

// WebDataset shards: a folder of .tar files, keys prefixed with the shard.
#[test]
fn webdataset_shards_read() {
    let loaded = Dataset::resolve(
        fixtures().join("shards").to_str().unwrap(),
        &Home::new("/none"),
    )
    .unwrap()
    .load(OnBadSample::Fail, &Silent)
    .unwrap();
    let ids: Vec<&str> = loaded.documents.iter().map(|d| d.id()).collect();
    assert_eq!(
        ids,
        vec!["shards/00000/000000000", "shards/00000/000000001"]
    );
    assert_eq!(loaded.documents[1].caption(), "red apple");
}

// A tar with a stray member and an orphan image: named errors, or skipped and counted.
#[test]
fn webdataset_stray_members_are_reported() {
    let dataset = Dataset::resolve(
        fixtures().join("stray.tar").to_str().unwrap(),
        &Home::new("/none"),
    )
    .unwrap();
    let err = dataset
        .load(OnBadSample::Fail, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stray.tar: member '000000001.exe': unexpected file type"),
        "{err}"
    );
    let loaded = dataset.load(OnBadSample::Skip, &Silent).unwrap();
    assert_eq!(loaded.documents.len(), 1);
    let skipped = messages(&loaded.skipped);
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("000000002.png: no caption beside it (expected 000000002.txt)")),
        "{skipped:?}"
    );
}

// A file that is not a tar at all names the file, and prints none of its bytes raw.
#[test]
fn not_a_tar_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.tar");
    let mut bytes = vec![7u8; 1500];
    bytes[100..109].copy_from_slice(b"\x1b[31m\x00\x01\x02\x03");
    std::fs::write(&path, bytes).unwrap();
    for policy in [OnBadSample::Skip, OnBadSample::Fail] {
        let err = Dataset::resolve(path.to_str().unwrap(), &Home::new("/none"))
            .unwrap()
            .load(policy, &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.tar"), "{err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
}

// A shard cut off in its third pair: skipping bad samples keeps the two pairs before the
// cut and names the damage; failing on them names the shard and the last good member.
#[test]
fn truncated_shard_keeps_the_members_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.tar");
    let mut builder = tar::Builder::new(Vec::new());
    for (key, caption) in [("a", "red apple"), ("b", "blue whale"), ("c", "green tree")] {
        let pixels = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let mut png = std::io::Cursor::new(Vec::new());
        pixels.write_to(&mut png, image::ImageFormat::Png).unwrap();
        for (name, data) in [
            (format!("{key}.png"), png.into_inner()),
            (format!("{key}.txt"), caption.as_bytes().to_vec()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data.as_slice())
                .unwrap();
        }
    }
    let bytes = builder.into_inner().unwrap();
    // Each member is a 512-byte header and its padded data; cut inside c.png's data.
    let c_png = bytes.windows(5).position(|w| w == b"c.png").unwrap();
    std::fs::write(&path, &bytes[..c_png + 512 + 40]).unwrap();
    let dataset = Dataset::resolve(path.to_str().unwrap(), &Home::new("/none")).unwrap();
    let loaded = dataset.load(OnBadSample::Skip, &Silent).unwrap();
    let captions: Vec<String> = loaded.documents.iter().map(|d| d.caption()).collect();
    assert_eq!(captions, ["red apple", "blue whale"]);
    let skipped = messages(&loaded.skipped);
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("cut.tar") && m.contains("unreadable after member 'b.txt'")),
        "{skipped:?}"
    );
    let err = dataset
        .load(OnBadSample::Fail, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.tar") && err.contains("after member 'b.txt'"),
        "{err}"
    );
}

// Unknown names, empty folders and unfetched built-ins each get their own clear error.
#[test]
fn dataset_names_resolve_or_explain() {
    let home = Home::new("/nonexistent-racm3-home");
    let err = Dataset::resolve("imagenet", &home).unwrap_err();
    assert!(matches!(err, Error::UnknownDataset { .. }), "{err}");
    let err = Dataset::resolve("emoji", &home).unwrap_err();
    assert!(err.to_string().contains("racm3 data fetch emoji"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = Dataset::resolve(empty.path().to_str().unwrap(), &home)
        .unwrap()
        .load(OnBadSample::Skip, &Silent)
        .unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err}");
    assert!(
        err.to_string().contains("no image-caption pairs found"),
        "{err}"
    );
}

/// The fixture emoji root copied into a temp folder without its drawn renditions.
fn fixture_packages() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(fixtures().join("emoji")) {
        let entry = entry.unwrap();
        let relative = entry.path().strip_prefix(fixtures().join("emoji")).unwrap();
        if relative.starts_with("renditions") {
            continue;
        }
        let target = dir.path().join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    dir
}

// Drawing the fixture SVG packages gives the committed renditions pixel for pixel: 64x64,
// the red apple mostly red in every rendition, the skin tones found by code point
// (OpenMoji files, Fluent's table) and by name (Noto v1, through Fluent's CLDR names:
// "WAVING HAND SIGN" is `waving-hand` there), and coverage counted.
#[test]
fn svg_renditions_are_drawn_and_mapped_onto_the_catalog() {
    let root = fixture_packages();
    for vendor in [Vendor::OpenMoji, Vendor::Fluent, Vendor::NotoV1] {
        let coverage = renditions::build(root.path(), vendor, OnBadSample::Fail, &Silent).unwrap();
        assert_eq!(
            (coverage.entities, coverage.entities_matched),
            (3, 3),
            "{coverage:?}"
        );
        let (drawn, committed) = (
            renditions::dir(root.path(), vendor),
            renditions::dir(&fixtures().join("emoji"), vendor),
        );
        assert_eq!(
            Coverage::read(&drawn).unwrap(),
            Coverage::read(&committed).unwrap()
        );
        for entry in std::fs::read_dir(&committed).unwrap() {
            let name = entry.unwrap().file_name();
            if !name.to_string_lossy().ends_with(".png") {
                continue;
            }
            let read = |dir: &Path| racm3_data::read_image(&dir.join(&name)).unwrap();
            let (ours, theirs) = (read(&drawn), read(&committed));
            assert_eq!(ours.dimensions(), (64, 64));
            assert!(
                ours == theirs,
                "{vendor:?} {name:?} differs from the fixture"
            );
        }
        let apple = racm3_data::read_image(&drawn.join("1f34e.png")).unwrap();
        let colour = svg::dominant_colour(&apple).unwrap();
        assert!(
            colour[0] > 150 && colour[1] < 100 && colour[2] < 100,
            "{vendor:?} {colour:?}"
        );
    }
    let openmoji = Coverage::read(&renditions::dir(root.path(), Vendor::OpenMoji)).unwrap();
    // Base drawings plus the tones the fixture package has (light, medium-light, medium).
    assert_eq!(openmoji.images, 3 + 3);
    let noto = Coverage::read(&renditions::dir(root.path(), Vendor::NotoV1)).unwrap();
    assert_eq!(noto.images, 3 + 5);
}

// A malformed SVG stops the drawing with the package, code point and reason named; with
// Skip it is left out and listed, and the rest are drawn.
#[test]
fn a_malformed_svg_is_named_or_skipped() {
    let root = fixture_packages();
    let svgs = root.path().join("openmoji-17.0.0/color/svg");
    std::fs::write(
        svgs.join("1F600.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=",
    )
    .unwrap();
    std::fs::write(
        svgs.join("1F34E.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>fetch('x')</script></svg>",
    )
    .unwrap();
    let err = renditions::build(root.path(), Vendor::OpenMoji, OnBadSample::Fail, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("openmoji@17.0.0 1F"), "{err}");
    assert!(
        err.contains("malformed XML") || err.contains("<script>"),
        "{err}"
    );
    assert!(!renditions::dir(root.path(), Vendor::OpenMoji).exists());
    let coverage =
        renditions::build(root.path(), Vendor::OpenMoji, OnBadSample::Skip, &Silent).unwrap();
    assert_eq!(coverage.images, 6 - 2);
    assert_eq!(coverage.skipped.len(), 2, "{coverage:?}");
    assert!(
        coverage
            .skipped
            .iter()
            .any(|s| s.contains("1F600 (grinning-face): malformed XML"))
    );
    assert!(
        coverage
            .skipped
            .iter()
            .any(|s| s.contains("1F34E (red-apple)") && s.contains("<script>"))
    );
}

// An Iconify set whose JSON is malformed, or whose icon has no body, is named.
#[test]
fn a_broken_icon_set_is_named() {
    let root = fixture_packages();
    let icons = root
        .path()
        .join("iconify-json-fluent-emoji-flat-1.2.6/icons.json");
    std::fs::write(&icons, "{\"icons\": {\"red-apple\": ").unwrap();
    let err =
        renditions::build(root.path(), Vendor::Fluent, OnBadSample::Fail, &Silent).unwrap_err();
    assert!(
        err.to_string().contains("icons.json: malformed JSON"),
        "{err}"
    );
    std::fs::write(&icons, "{\"icons\": {\"red-apple\": {}}}").unwrap();
    let err = renditions::build(root.path(), Vendor::Fluent, OnBadSample::Fail, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1F34E") && err.contains("no body"), "{err}");
}
