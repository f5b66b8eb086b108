//! CI's short run of the `webdataset_tar` and `image_decode` fuzz targets (tools/fuzz.sh
//! runs them coverage-guided): tar shards and images, arbitrary or a fixture damaged,
//! are read into documents or refused by name, never a panic.

use proptest::prelude::*;
use racm3_data::{OnBadSample, Silent, WebDataset, decode_rgb};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        racm3_testing::repo_root()
            .join("tests/fixtures/data")
            .join(name),
    )
    .unwrap()
}

/// `data` with bytes set at spread offsets, cut short or not.
fn damage(mut data: Vec<u8>, flips: &[(prop::sample::Index, u8)], cut: Option<usize>) -> Vec<u8> {
    for (at, value) in flips {
        let at = at.index(data.len());
        data[at] = *value;
    }
    if let Some(cut) = cut {
        data.truncate(cut.min(data.len()));
    }
    data
}

fn flips() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_shards_never_panic(
        flips in flips(),
        cut in prop::option::of(0usize..20480),
        stray in any::<bool>(),
    ) {
        let name = if stray { "stray.tar" } else { "shards/00000.tar" };
        let data = damage(fixture(name), &flips, cut);
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("fuzzed.tar");
        std::fs::write(&shard, data).unwrap();
        if let Ok(loaded) = WebDataset::open(&shard).unwrap().load(OnBadSample::Skip, &Silent) {
            for problem in &loaded.skipped {
                prop_assert!(!problem.to_string().chars().any(char::is_control), "{problem}");
            }
        }
    }

    #[test]
    fn damaged_images_never_panic(flips in flips(), cut in prop::option::of(0usize..4096)) {
        let data = damage(fixture("bad-pairs/good.png"), &flips, cut);
        if let Ok(image) = decode_rgb(&data, "fuzzed.png") {
            prop_assert!(image.width() > 0 && image.height() > 0);
        }
    }
}
