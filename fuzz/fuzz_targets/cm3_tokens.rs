//! CM3 token decoding and rendering of arbitrary id sequences (what a generator may
//! emit), with the committed generator's tokenizer.
#![no_main]

use std::sync::LazyLock;

use racm3_tokenize::{Cm3Codec, TextTokenizer};

static CODEC: LazyLock<Cm3Codec> = LazyLock::new(|| {
    let checkpoint = racm3_testing::repo_root().join("checkpoints/cm3-emoji-small");
    let text = TextTokenizer::from_file(&checkpoint.join("tokenizer.json")).unwrap();
    Cm3Codec::new(text, 1024)
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ids a little past the vocabulary too, which must be refused by name.
    let limit = CODEC.ids().len() + 8;
    let tokens: Vec<u32> = data
        .chunks(2)
        .map(|pair| u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0)))
        .map(|id| id % limit)
        .collect();
    let _ = CODEC.decode(&tokens);
    let _ = CODEC.render(&tokens);
});
