//! A WebDataset `.tar` shard of arbitrary bytes, read as `racm3 memory build x.tar
//! --skip-bad` reads it.
#![no_main]

use racm3_data::{OnBadSample, Silent, WebDataset};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("fuzzed.tar");
    std::fs::write(&shard, data).unwrap();
    if let Ok(dataset) = WebDataset::open(&shard) {
        let _ = dataset.load(OnBadSample::Skip, &Silent);
    }
});
