//! The server against real outside clients, slow external tests (RACM3_EXTERNAL_TESTS=1):
//! clip-retrieval's own ClipClient against /knn-service, and the page in headless
//! Chromium.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use racm3_serve::Settings;
use racm3_testing::repo_root;
use serde_json::Value;

// clip-retrieval's own ClipClient (its clip_client.py from PyPI, fetched by
// .ci/clip-client) queries /knn-service by text, by image file and by embedding.
#[test]
fn clip_retrieval_client_works_against_knn_service() {
    if !racm3_testing::external("clip_retrieval_client_works_against_knn_service") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, true, Settings::default());
    let client = match std::env::var("RACM3_CLIP_CLIENT") {
        Ok(path) => path,
        Err(_) => {
            let output = Command::new(repo_root().join(".ci/clip-client"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                ".ci/clip-client failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        }
    };
    let script = r#"
import json, sys
from clip_client import ClipClient
url, image = sys.argv[1], sys.argv[2]
client = ClipClient(url=url + "/knn-service", indice_name="racm3", num_images=3)
by_text = client.query(text="grinning face")
by_image = client.query(image=image)
by_embedding = client.query(embedding_input=[1.0] + [0.0] * 255)
print(json.dumps({"text": by_text, "image": by_image, "embedding": by_embedding}))
"#;
    let output = Command::new("python3")
        .env("PYTHONPATH", &client)
        .args(["-c", script, &server.url])
        .arg(emoji_png("1f600.png"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (query, found) in results.as_object().unwrap() {
        let found = found
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {found}"));
        assert_eq!(found.len(), 3, "{query}: {found:?}");
        for hit in found {
            assert!(hit["id"].is_u64() && hit["caption"].is_string(), "{hit}");
            assert!(hit["similarity"].as_f64().unwrap() <= 1.0 + 1e-5);
        }
    }
    // An image finds its own document (whose key also holds its caption), a near copy
    // that a search service keeps.
    let best = &results["image"][0];
    assert_eq!(best["document_id"], "emoji/twitter/1f600", "{best}");
    assert!(best["similarity"].as_f64().unwrap() > 0.9, "{best}");
    assert!(
        results["text"][0]["caption"]
            .as_str()
            .unwrap()
            .contains("face")
    );
}

// The page in headless Chromium (Debian chromium, npm playwright-core from .ci/browser):
// search, generate with and without retrieval, and caption a chosen image all render.
#[test]
fn page_works_in_headless_chromium() {
    if !racm3_testing::external("page_works_in_headless_chromium") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, false, Settings::default());
    let modules = match std::env::var("RACM3_NODE_PATH") {
        Ok(path) => path,
        Err(_) => {
            let output = Command::new(repo_root().join(".ci/browser"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                ".ci/browser failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        }
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page");
    std::fs::create_dir_all(&shots).unwrap();
    let output = Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page.mjs"))
        .arg(format!("{}/", server.url))
        .arg(emoji_png("1f600.png"))
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shots.join("generate.png").exists() && shots.join("caption.png").exists());
}
