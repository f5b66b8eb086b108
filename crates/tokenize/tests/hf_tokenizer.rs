//! Loading a real Hugging Face tokenizer.json: CLIP's, rebuilt from OpenAI's vocabulary
//! and converted by transformers (tools/make_clip_tokenizer_fixture.py). The ids must be
//! the ones transformers gives.

use std::io::Read;
use std::path::Path;

use racm3_tokenize::TextTokenizer;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tokenizer")
        .join(name)
}

// CLIP's tokenizer loads unchanged and matches transformers' ids and decodings.
#[test]
fn clip_tokenizer_matches_transformers() {
    let gz = std::fs::read(fixture("clip-tokenizer.json.gz")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut json)
        .unwrap();
    let tokenizer = TextTokenizer::from_bytes(&json).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("clip-expected.json")).unwrap()).unwrap();
    assert_eq!(u64::from(tokenizer.vocab_size()), expected["vocab_size"]);
    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids, want, "ids of {text:?}");
        assert_eq!(
            tokenizer.decode(&ids).unwrap(),
            case["decoded"],
            "decoding {text:?}"
        );
    }
}
