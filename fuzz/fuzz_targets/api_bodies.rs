//! The HTTP API's bodies: the first byte picks an endpoint, the rest is the body, sent to
//! the real router over a retrieval-only service on the fixture memory. Any answer but a
//! 500 is fine; a 500 (an internal error from user input) or a panic is a bug.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use racm3::data::{Dataset, Home, OnBadSample, Silent};
use racm3_serve::{Service, Settings};
use tower::ServiceExt;

const ENDPOINTS: [&str; 6] = [
    "/retrieve",
    "/generate",
    "/caption",
    "/knn-service",
    "/documents",
    "/documents/x",
];

struct App {
    router: axum::Router,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

static APP: LazyLock<App> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let root = racm3_testing::repo_root();
    let clip = racm3::memory::load_clip(&root.join("checkpoints/clip-emoji-small")).unwrap();
    let home = Home::new(root.join("tests/fixtures/data"));
    let documents = Dataset::resolve("emoji", &home)
        .unwrap()
        .load(OnBadSample::Fail, &Silent)
        .unwrap()
        .documents;
    let path = dir.path().join("memory");
    let mut memory =
        racm3::memory::Memory::create(&path, clip.dim(), "flat", clip.describe()).unwrap();
    racm3::memory::add_new_documents(&mut memory, &clip, documents, &Silent).unwrap();
    let settings = Settings::default();
    let service = Service::new(clip, memory, None, settings.limits.clone()).unwrap();
    App {
        router: racm3_serve::router(Arc::new(service), &settings),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        _dir: dir,
    }
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let endpoint = ENDPOINTS[usize::from(which) % ENDPOINTS.len()];
    let method = if endpoint == "/documents/x" { "DELETE" } else { "POST" };
    let request = Request::builder()
        .method(method)
        .uri(endpoint)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = APP
        .runtime
        .block_on(APP.router.clone().oneshot(request))
        .unwrap();
    assert_ne!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "{endpoint}: {}",
        String::from_utf8_lossy(body)
    );
});
