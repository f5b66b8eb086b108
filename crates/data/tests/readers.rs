//! Each reader on the small committed fixtures (made from the real packages by
//! tools/make_data_fixtures.py), and each kind of bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use racm3_data::emoji::{EmojiDataset, Vendor};
use racm3_data::fashion_mnist::FashionMnist;
use racm3_data::{Dataset, Error, Home, OnBadSample, Silent, Split};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn messages(errors: &[Error]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

// Both vendors' documents load with CLDR skin-tone captions, and every variant of an
// entity (tones, vendors) lands in the same split.
#[test]
fn emoji_reads_both_vendors_and_splits_by_entity() {
    let dataset = EmojiDataset::from_fetched(&fixtures().join("emoji"), &Vendor::ALL).unwrap();
    let loaded = dataset.load(OnBadSample::Fail, &Silent).unwrap();
    // Per vendor: red apple, waving hand and its 5 tones, grinning face.
    assert_eq!(loaded.documents.len(), 16);
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

// A file that is not a tar at all names the file.
#[test]
fn not_a_tar_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.tar");
    std::fs::write(&path, vec![7u8; 1500]).unwrap();
    let err = Dataset::resolve(path.to_str().unwrap(), &Home::new("/none"))
        .unwrap()
        .load(OnBadSample::Skip, &Silent)
        .unwrap_err();
    assert!(err.to_string().contains("broken.tar"), "{err}");
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
