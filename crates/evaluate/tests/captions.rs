//! CIDEr-D, ROUGE-L and BLEU against pycocoevalcap 1.2 on a committed fixture of 56 images
//! (tools/make_cider_fixture.py): the PTB tokenization of every caption, and every
//! per-image score within 1e-9, from COCO-format files.

use std::path::{Path, PathBuf};

use racm3_evaluate::coco::read_pairs;
use racm3_evaluate::{bleu, cider_d, ptb_tokenize, rouge_l, score_captions};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cider")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

// Every reference and candidate tokenizes to exactly what Stanford's PTBTokenizer and
// pycocoevalcap's punctuation filter made of it, and so do PTB's harder cases.
#[test]
fn tokenization_matches_ptb() {
    let pairs = read_pairs(&fixture("references.json"), &fixture("results.json")).unwrap();
    let expected = expected();
    let images = expected["images"].as_array().unwrap();
    assert_eq!(images.len(), 56);
    for (index, image) in images.iter().enumerate() {
        assert_eq!(
            ptb_tokenize(&pairs.candidates[index]),
            image["candidate_tokenized"].as_str().unwrap(),
            "candidate {:?}",
            pairs.candidates[index]
        );
        for (raw, tokenized) in pairs.references[index]
            .iter()
            .zip(strings(&image["references_tokenized"]))
        {
            assert_eq!(ptb_tokenize(raw), tokenized, "reference {raw:?}");
        }
    }
    for (probe, tokenized) in expected["probes"].as_object().unwrap() {
        assert_eq!(
            ptb_tokenize(probe),
            tokenized.as_str().unwrap(),
            "probe {probe:?}"
        );
    }
}

// From the same tokenized captions, CIDEr-D and ROUGE-L equal pycocoevalcap's per image
// within 1e-9, and so do the corpus means computed from the raw files.
#[test]
fn scores_match_pycocoevalcap() {
    let expected = expected();
    let images = expected["images"].as_array().unwrap();
    let candidates: Vec<String> = images
        .iter()
        .map(|image| image["candidate_tokenized"].as_str().unwrap().to_owned())
        .collect();
    let references: Vec<Vec<String>> = images
        .iter()
        .map(|image| strings(&image["references_tokenized"]))
        .collect();
    let cider = cider_d(&candidates, &references).unwrap();
    let rouge = rouge_l(&candidates, &references).unwrap();
    for (index, image) in images.iter().enumerate() {
        let want = image["cider"].as_f64().unwrap();
        assert!(
            (cider[index] - want).abs() < 1e-9,
            "image {index}: {} vs {want}",
            cider[index]
        );
        let want = image["rouge_l"].as_f64().unwrap();
        assert!(
            (rouge[index] - want).abs() < 1e-9,
            "image {index}: {} vs {want}",
            rouge[index]
        );
    }
    assert!(cider.iter().any(|&s| s > 3.0) && cider.contains(&0.0));
    let (corpus_bleu, image_bleu) = bleu(&candidates, &references).unwrap();
    for (index, image) in images.iter().enumerate() {
        for k in 0..4 {
            let want = image["bleu"][k].as_f64().unwrap();
            let got = image_bleu[index][k];
            assert!(
                (got - want).abs() < 1e-9,
                "image {index} BLEU-{}: {got} vs {want}",
                k + 1
            );
        }
    }
    for k in 0..4 {
        let want = expected["bleu"][k].as_f64().unwrap();
        assert!(
            (corpus_bleu[k] - want).abs() < 1e-9,
            "BLEU-{}: {} vs {want}",
            k + 1,
            corpus_bleu[k]
        );
    }

    let pairs = read_pairs(&fixture("references.json"), &fixture("results.json")).unwrap();
    let scores = score_captions(&pairs.candidates, &pairs.references).unwrap();
    assert!((scores.cider_d - expected["cider"].as_f64().unwrap()).abs() < 1e-9);
    assert!((scores.rouge_l - expected["rouge_l"].as_f64().unwrap()).abs() < 1e-9);
}

// Bad input: mismatched lengths, an image without references, a results file naming an
// unknown image, and malformed JSON each get an error that names the problem.
#[test]
fn bad_input_is_named() {
    let one = vec!["a cat".to_owned()];
    let err = cider_d(&one, &[]).unwrap_err().to_string();
    assert!(err.contains("1 candidates but 0 reference sets"), "{err}");
    let err = cider_d(&one, &[vec![]]).unwrap_err().to_string();
    assert!(err.contains("no reference captions"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.json");
    std::fs::write(&results, r#"[{"image_id": 999, "caption": "x"}]"#).unwrap();
    let err = read_pairs(&fixture("references.json"), &results)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image 999") && err.contains("no references"),
        "{err}"
    );
    std::fs::write(&results, "[{").unwrap();
    let err = read_pairs(&fixture("references.json"), &results)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("results.json") && err.contains("not a COCO results list"),
        "{err}"
    );
}
