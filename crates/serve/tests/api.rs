//! The server as a client meets it, over loopback, running in the test's process: answers
//! and their shapes, every kind of bad request answered 4xx while the server keeps
//! serving, a timeout answered 408, and a load of 64 clients without a 5xx other than the
//! full queue's 503.
//!
//! Each test builds a memory of the fixture emoji with the committed CLIP and serves it
//! with the committed generator.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use racm3_serve::{Limits, Settings};
use serde_json::json;

// Retrieval, generation and captioning answer with their outputs and the documents that
// informed them; every bad request gets a 4xx that names its problem, and the server
// answers normally afterwards.
#[test]
fn api_answers_and_refuses_bad_requests() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let token = "s3cret";
    let settings = Settings {
        token: Some(token.to_owned()),
        limits: Limits {
            max_body_bytes: 1_000_000,
            max_steps: 300,
            ..Limits::default()
        },
        ..Settings::default()
    };
    let server = Server::start(&memory, false, settings);
    let http = agent();
    let url = |path: &str| format!("{}{path}", server.url);
    let token = Some(token);

    let health = get(&http, &url("/health"), None);
    assert_eq!(health.status, 200);
    let documents = health.body["documents"].as_u64().unwrap();
    assert!(documents > 8, "{}", health.body);

    let found = post(
        &http,
        &url("/retrieve"),
        token,
        &json!({"text": "waving hand", "k": 3}),
    );
    assert_eq!(found.status, 200, "{}", found.body);
    let rows = found.body["documents"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(rows.iter().all(|r| decoded_size(&r["image"]) == (64, 64)));

    // An image query finds its own document first when near copies are kept.
    let face = image_base64(&emoji_png("1f600.png"));
    let by_image = post(
        &http,
        &url("/retrieve"),
        token,
        &json!({"image": face, "k": 1, "query_threshold": 1.5}),
    );
    assert_eq!(by_image.status, 200, "{}", by_image.body);
    assert_eq!(by_image.body["documents"][0]["id"], "emoji/twitter/1f600");

    let generated = post(
        &http,
        &url("/generate"),
        token,
        &json!({"text": "grinning face", "samples": 2, "k": 2, "query_threshold": 1.5}),
    );
    assert_eq!(generated.status, 200, "{}", generated.body);
    let outputs = generated.body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(outputs.iter().all(|o| decoded_size(&o["png"]) == (64, 64)));
    let similarities: Vec<f64> = outputs
        .iter()
        .map(|o| o["clip_similarity"].as_f64().unwrap())
        .collect();
    assert!(similarities[0] >= similarities[1], "re-ranked best first");
    assert_eq!(generated.body["retrieved"].as_array().unwrap().len(), 2);
    let without = post(
        &http,
        &url("/generate"),
        token,
        &json!({"text": "grinning face", "k": 0}),
    );
    assert_eq!(without.status, 200, "{}", without.body);
    assert!(without.body["retrieved"].as_array().unwrap().is_empty());

    let captioned = post(
        &http,
        &url("/caption"),
        token,
        &json!({"image": face, "samples": 2}),
    );
    assert_eq!(captioned.status, 200, "{}", captioned.body);
    assert_eq!(captioned.body["outputs"].as_array().unwrap().len(), 2);
    assert!(captioned.body["outputs"][0]["text"].is_string());

    let retrieve = url("/retrieve");
    // An image over the pixel limit, refused from its header alone.
    let mut huge_png = Vec::new();
    image::RgbImage::new(5000, 5000)
        .write_to(
            &mut std::io::Cursor::new(&mut huge_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let with_header = |value: &str| {
        answer(
            http.post(&retrieve)
                .header("Authorization", value)
                .send_json(json!({"text": "a"})),
        )
    };
    assert_eq!(with_header("bearer s3cret").status, 200);
    assert_eq!(with_header("BEARER  s3cret").status, 200);
    assert_eq!(with_header("Bearer S3CRET").status, 401);
    assert_eq!(with_header("Basic s3cret").status, 401);
    let refusals: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "no token",
            post(&http, &retrieve, None, &json!({"text": "a"})),
            401,
            "bearer token",
        ),
        (
            "wrong token",
            post(&http, &retrieve, Some("guess"), &json!({"text": "a"})),
            401,
            "bearer token",
        ),
        (
            "malformed JSON",
            post_raw(&http, &retrieve, "s3cret", b"{\"text\": "),
            400,
            "bad JSON body",
        ),
        (
            "wrong type",
            post(&http, &retrieve, token, &json!({"text": 5})),
            422,
            "invalid type",
        ),
        (
            "unknown field",
            post(&http, &retrieve, token, &json!({"text": "a", "kk": 2})),
            422,
            "unknown field",
        ),
        (
            "huge body",
            post_huge(&server.url, "/retrieve", 1_200_000),
            413,
            "max_body_bytes",
        ),
        (
            "not an image",
            post(
                &http,
                &retrieve,
                token,
                &json!({"image": BASE64.encode(b"GIF89a no")}),
            ),
            422,
            "not a PNG, JPEG or WebP",
        ),
        (
            "not base64",
            post(&http, &retrieve, token, &json!({"image": "%%%"})),
            422,
            "not base64",
        ),
        (
            "k = 10^9",
            post(
                &http,
                &retrieve,
                token,
                &json!({"text": "a", "k": 1_000_000_000u64}),
            ),
            413,
            "k is 1000000000, above the server's limit of 100",
        ),
        (
            "prompt k = 10^9",
            post(
                &http,
                &url("/generate"),
                token,
                &json!({"text": "a", "k": 1_000_000_000u64}),
            ),
            413,
            "above the server's limit of 16",
        ),
        (
            "samples = 10^9",
            post(
                &http,
                &url("/generate"),
                token,
                &json!({"text": "a", "samples": 1_000_000_000u64}),
            ),
            413,
            "samples",
        ),
        (
            "too many steps",
            post(
                &http,
                &url("/generate"),
                token,
                &json!({"text": "a", "samples": 3, "cfg": 3.0}),
            ),
            413,
            "steps is 384, above the server's limit of 300",
        ),
        (
            "empty query",
            post(&http, &retrieve, token, &json!({})),
            422,
            "a query needs text, an image, or both",
        ),
        (
            "negative temperature",
            post(
                &http,
                &url("/generate"),
                token,
                &json!({"text": "a", "temperature": -1.0}),
            ),
            422,
            "temperature",
        ),
        (
            "a URL to fetch",
            post(
                &http,
                &url("/knn-service"),
                token,
                &json!({"image_url": "http://x/y.png", "num_images": 2}),
            ),
            422,
            "does not fetch URLs",
        ),
        (
            "unknown route",
            get(&http, &url("/nope"), token),
            404,
            "no such endpoint",
        ),
        (
            "5000 x 5000 pixels",
            post(
                &http,
                &retrieve,
                token,
                &json!({"image": BASE64.encode(&huge_png)}),
            ),
            413,
            "image_pixels is 25000000",
        ),
    ];
    for (what, answer, status, message) in refusals {
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{what}: {error}");
    }
    // A document added over the API is found at once; removed, it is gone, and removing
    // it again names the id.
    let added = post(
        &http,
        &url("/documents"),
        token,
        &json!({"documents": [{"id": "api/purple-thing", "caption": "purple thing", "image": face}]}),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["memory_size"].as_u64().unwrap(), documents + 1);
    let query = json!({"image": face, "k": 2, "query_threshold": 1.5});
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let found_new = post(&http, &retrieve, token, &query);
    assert!(
        ids(&found_new).contains(&"api/purple-thing".to_owned()),
        "{}",
        found_new.body
    );
    let delete = |id: &str| {
        answer(
            http.delete(&url(&format!("/documents/{id}")))
                .header("Authorization", "Bearer s3cret")
                .call(),
        )
    };
    let removed = delete("api/purple-thing");
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["memory_size"].as_u64().unwrap(), documents);
    let after = post(&http, &retrieve, token, &query);
    assert!(
        !ids(&after).contains(&"api/purple-thing".to_owned()),
        "{}",
        after.body
    );
    let again_removed = delete("api/purple-thing");
    assert_eq!(again_removed.status, 404, "{}", again_removed.body);
    assert!(
        again_removed.body["error"]
            .as_str()
            .unwrap()
            .contains("api/purple-thing")
    );

    let again = post(
        &http,
        &retrieve,
        token,
        &json!({"text": "waving hand", "k": 3}),
    );
    assert_eq!(again.status, 200, "still serving: {}", again.body);
    assert_eq!(again.body["documents"], found.body["documents"]);
    let metrics = get(&http, &url("/metrics"), token);
    let text = metrics.body.as_str().unwrap();
    for line in [
        "racm3_http_requests_total{endpoint=\"/retrieve\",status=\"401\"} 4",
        "racm3_http_requests_total{endpoint=\"/retrieve\",status=\"413\"} 3",
        "racm3_http_requests_total{endpoint=\"/generate\",status=\"200\"} 2",
        "racm3_http_request_duration_seconds_count{endpoint=\"/caption\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

// A generation past --timeout is answered 408, and the server goes on serving.
#[test]
fn slow_requests_time_out() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let settings = Settings {
        timeout: Duration::from_secs(1),
        ..Settings::default()
    };
    let server = Server::start(&memory, false, settings);
    let http = agent();
    let slow = post(
        &http,
        &format!("{}/generate", server.url),
        None,
        &json!({"text": "grinning face", "samples": 16, "k": 0}),
    );
    assert_eq!(slow.status, 408, "{}", slow.body);
    assert!(
        slow.body["error"]
            .as_str()
            .unwrap()
            .contains("limit of 1 s (--timeout)")
    );
    let quick = get(&http, &format!("{}/health", server.url), None);
    assert_eq!(quick.status, 200);
}

/// What a load run saw, per endpoint: answers by status, and latencies of the 200s.
#[derive(Default)]
struct Load {
    statuses: std::collections::BTreeMap<(&'static str, u16), usize>,
    latencies: std::collections::BTreeMap<&'static str, Vec<f64>>,
    seconds: f64,
}

/// `clients` threads, each sending at most `per_client` requests for at most `seconds`,
/// one generation for three retrievals; a client told 503 waits the Retry-After seconds,
/// as a polite client does.
fn load(url: &str, clients: usize, seconds: f64, per_client: usize) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let http = agent();
                let mut seen = Vec::new();
                for n in 0..per_client {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sent = Instant::now();
                    let (endpoint, answer) = if (client + n) % 4 == 0 {
                        let body = json!({"text": "red apple", "seed": n});
                        (
                            "/generate",
                            post(&http, &format!("{url}/generate"), None, &body),
                        )
                    } else {
                        let body = json!({"text": "waving hand", "k": 4, "images": false});
                        (
                            "/retrieve",
                            post(&http, &format!("{url}/retrieve"), None, &body),
                        )
                    };
                    let latency = sent.elapsed().as_secs_f64();
                    if answer.status == 503 {
                        let wait: u64 = answer
                            .retry_after
                            .as_deref()
                            .and_then(|s| s.parse().ok())
                            .expect("a 503 says when to retry");
                        std::thread::sleep(Duration::from_secs(wait));
                    }
                    seen.push((endpoint, answer.status, latency));
                }
                seen
            })
        })
        .collect();
    let mut result = Load::default();
    for thread in threads {
        for (endpoint, status, latency) in thread.join().unwrap() {
            *result.statuses.entry((endpoint, status)).or_default() += 1;
            if status == 200 {
                result.latencies.entry(endpoint).or_default().push(latency);
            }
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    for latencies in result.latencies.values_mut() {
        latencies.sort_by(f64::total_cmp);
    }
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn check_and_report(result: &Load) {
    let errors: Vec<_> = result
        .statuses
        .iter()
        .filter(|((_, status), _)| *status != 200 && *status != 503)
        .collect();
    assert!(
        errors.is_empty(),
        "answers other than 200 and 503: {:?}",
        result.statuses
    );
    println!(
        "{:.1} s, answers by (endpoint, status): {:?}",
        result.seconds, result.statuses
    );
    for endpoint in ["/retrieve", "/generate"] {
        let latencies = result
            .latencies
            .get(endpoint)
            .map_or(&[][..], Vec::as_slice);
        assert!(
            !latencies.is_empty(),
            "no {endpoint} succeeded: {:?}",
            result.statuses
        );
        println!(
            "{endpoint}: {} ok, {:.2} ok/s, latency p50 {:.3} s, p99 {:.3} s",
            latencies.len(),
            latencies.len() as f64 / result.seconds,
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        );
    }
}

// 64 concurrent clients mixing retrieval and generation get only 200s and the full
// queue's 503s (with Retry-After); each client is bounded to 8 requests and 5 s.
#[test]
fn load_of_64_clients_meets_no_error_but_busy() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let settings = Settings {
        queue: 8,
        ..Settings::default()
    };
    let server = Server::start(&memory, false, settings);
    let result = load(&server.url, 64, 5.0, 8);
    check_and_report(&result);
    let busy = result
        .statuses
        .iter()
        .any(|((_, status), _)| *status == 503);
    assert!(busy, "the queue never filled: {:?}", result.statuses);
}

// The benchmark behind BENCHMARKS.md's load figures: 64 clients for 30 s against the
// demo's memory and generator. Run from the repository root after `racm3 demo --no-serve`:
// cargo test --release -p racm3-serve --test api -- --ignored --nocapture load_benchmark
#[test]
#[ignore]
fn load_benchmark() {
    let memory = racm3_testing::repo_root().join("demo/memory");
    let server = Server::start(&memory, false, Settings::default());
    check_and_report(&load(&server.url, 64, 30.0, 10_000));
}
