//! `racm3 serve` as a client meets it, over loopback: answers and their shapes, every
//! kind of bad request answered 4xx while the server keeps serving, clip-retrieval's own
//! client against /knn-service, no acknowledged document lost to a kill, a load of 64
//! clients without a 5xx other than the full queue's 503, and the page in Chromium.
//!
//! Each test builds a memory of the fixture emoji with the committed CLIP and serves it
//! with the committed generator.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/data")
}

fn emoji_png(name: &str) -> PathBuf {
    fixtures()
        .join("emoji/emoji-datasource-twitter-16.0.0/img/twitter/64")
        .join(name)
}

/// A memory of the fixture emoji keyed by the committed CLIP, in `dir`.
fn build_memory(dir: &Path) -> PathBuf {
    let memory = dir.join("memory");
    let clip = root().join("checkpoints/clip-emoji-small");
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .env("RACM3_HOME", fixtures())
        .args(["memory", "build", "emoji", "--index", "flat", "--clip"])
        .arg(&clip)
        .arg("--out")
        .arg(&memory)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    memory
}

/// A running `racm3 serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts `racm3 serve --port 0 ARGS` from the repository root and waits for its URL.
    fn start(memory: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_racm3"))
            .current_dir(root())
            .env("RACM3_HOME", fixtures())
            .env_remove("RACM3_TOKEN")
            .args(["serve", "--port", "0", "--memory"])
            .arg(memory)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(start) = line.find("http://") else {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("racm3 serve did not start: {line}{stderr}");
        };
        let url = line[start..].split_whitespace().next().unwrap();
        Server {
            url: url.trim_end_matches('/').to_owned(),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status and JSON body (or the text, when it is not JSON).
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        retry_after,
    }
}

fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut request = agent.post(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send_json(body))
}

fn post_raw(agent: &ureq::Agent, url: &str, token: &str, body: &[u8]) -> Answer {
    answer(
        agent
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body),
    )
}

/// Posts a body of `size` bytes as curl does with a large one: headers with
/// `Expect: 100-continue`, and the body only if the server asks for it. A server that
/// refuses from the headers alone answers at once, with no body in flight to reset.
fn post_huge(base: &str, path: &str, size: usize) -> Answer {
    use std::io::Write;
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer s3cret\r\n\
         Content-Type: application/json\r\nContent-Length: {size}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    if status_line.contains(" 100 ") {
        let mut blank = String::new();
        reader.read_line(&mut blank).unwrap();
        let _ = stream.write_all(&vec![b' '; size]);
        status_line.clear();
        reader.read_line(&mut status_line).unwrap();
    }
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let body = rest.split("\r\n\r\n").nth(1).unwrap_or_default();
    Answer {
        status: status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
        body: serde_json::from_str(body).unwrap_or(Value::String(rest.clone())),
        retry_after: None,
    }
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Answer {
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.call())
}

fn image_base64(path: &Path) -> String {
    BASE64.encode(std::fs::read(path).unwrap())
}

fn decoded_size(png: &Value) -> (u32, u32) {
    let bytes = BASE64.decode(png.as_str().unwrap()).unwrap();
    image::load_from_memory(&bytes)
        .unwrap()
        .to_rgb8()
        .dimensions()
}

// Retrieval, generation and captioning answer with their outputs and the documents that
// informed them; every bad request gets a 4xx that names its problem, and the server
// answers normally afterwards.
#[test]
fn api_answers_and_refuses_bad_requests() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let token = "s3cret";
    let server = Server::start(
        &memory,
        &[
            "--token",
            token,
            "--max-body-bytes",
            "1000000",
            "--max-steps",
            "300",
        ],
    );
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
        "racm3_http_requests_total{endpoint=\"/retrieve\",status=\"401\"} 2",
        "racm3_http_requests_total{endpoint=\"/retrieve\",status=\"413\"} 3",
        "racm3_http_requests_total{endpoint=\"/generate\",status=\"200\"} 2",
        "racm3_http_request_duration_seconds_count{endpoint=\"/caption\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

// clip-retrieval's own ClipClient (its clip_client.py from PyPI, fetched by
// .ci/clip-client) queries /knn-service by text, by image file and by embedding.
#[test]
fn clip_retrieval_client_works_against_knn_service() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, &["--retrieval-only"]);
    let client = match std::env::var("RACM3_CLIP_CLIENT") {
        Ok(path) => path,
        Err(_) => {
            let output = Command::new(root().join(".ci/clip-client"))
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

// Documents acknowledged by POST /documents are in the memory after the server is
// killed (SIGKILL) while more adds are in flight.
#[test]
fn kill_during_adds_loses_no_acknowledged_document() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let mut server = Server::start(&memory, &["--retrieval-only"]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let image = image_base64(&emoji_png("1f34e.png"));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (url, acknowledged, stop, image) = (
                format!("{}/documents", server.url),
                Arc::clone(&acknowledged),
                Arc::clone(&stop),
                image.clone(),
            );
            std::thread::spawn(move || {
                let http = agent();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("added/{writer}/{n}");
                    let body = json!({"documents": [{"id": id, "caption": format!("new apple {n}"), "image": image}]});
                    match http.post(&url).send_json(&body) {
                        Ok(response) if response.status() == 200 => {
                            acknowledged.lock().unwrap().push(id)
                        }
                        Ok(response) => assert_eq!(response.status(), 503),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 20 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 20,
        "only {} adds acknowledged",
        acknowledged.len()
    );
    let reopened = racm3::memory::Memory::open(&memory).unwrap();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| reopened.row_of(id).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "lost acknowledged documents: {missing:?}"
    );
}

// A generation past --timeout is answered 408, and the server goes on serving.
#[test]
fn slow_requests_time_out() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, &["--timeout", "1"]);
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

// A server that cannot start says why on one line and what to do on the next.
#[test]
fn a_missing_memory_is_named_with_a_hint() {
    let output = Command::new(env!("CARGO_BIN_EXE_racm3"))
        .args(["serve", "--memory", "/nonexistent/memory"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("error: opening the memory in /nonexistent/memory"),
        "{stderr}"
    );
    assert!(lines[1].starts_with("hint: "), "{stderr}");
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
    let server = Server::start(&memory, &["--queue", "8"]);
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
// cargo test --release -p racm3-cli --test serve -- --ignored --nocapture load_benchmark
#[test]
#[ignore]
fn load_benchmark() {
    let server = Server::start(&root().join("demo/memory"), &[]);
    check_and_report(&load(&server.url, 64, 30.0, 10_000));
}

// The page in headless Chromium (Debian chromium, npm playwright-core from .ci/browser):
// search, generate with and without retrieval, and caption a chosen image all render.
#[test]
fn page_works_in_headless_chromium() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, &[]);
    let modules = match std::env::var("RACM3_NODE_PATH") {
        Ok(path) => path,
        Err(_) => {
            let output = Command::new(root().join(".ci/browser")).output().unwrap();
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
