//! What the server's tests share: the fixture memory, a server running in this process on
//! a free loopback port, and an HTTP client's view of its answers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use racm3::data::{Dataset, Home, OnBadSample, Silent};
use racm3::memory::Memory;
use racm3::tasks::Generator;
use racm3_serve::{Service, Settings};
use racm3_testing::{fixtures, repo_root};
use serde_json::Value;

pub fn emoji_png(name: &str) -> PathBuf {
    fixtures()
        .join("emoji/emoji-datasource-twitter-16.0.0/img/twitter/64")
        .join(name)
}

/// A flat memory of the fixture emoji keyed by the committed CLIP, in `dir/memory`.
pub fn build_memory(dir: &Path) -> PathBuf {
    let path = dir.join("memory");
    let clip = racm3::memory::load_clip(&repo_root().join("checkpoints/clip-emoji-small")).unwrap();
    let documents = Dataset::resolve("emoji", &Home::new(fixtures()))
        .unwrap()
        .load(OnBadSample::Fail, &Silent)
        .unwrap()
        .documents;
    let mut memory = Memory::create(&path, clip.dim(), "flat", clip.describe()).unwrap();
    racm3::memory::add_new_documents(&mut memory, &clip, documents, &Silent).unwrap();
    path
}

/// A server over the memory in `memory` (with the committed generator unless
/// `retrieval_only`), running in this process on a free loopback port until dropped.
pub struct Server {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(memory: &Path, retrieval_only: bool, settings: Settings) -> Server {
        let root = repo_root();
        let memory = racm3::memory::open(memory).unwrap();
        let encoder = racm3::memory::encoder_for(&memory, None).unwrap();
        let generator = (!retrieval_only).then(|| {
            Generator::load(
                &root.join("checkpoints/cm3-emoji-small"),
                &root.join("checkpoints/vqgan-emoji64-f8"),
                &racm3::Device::Cpu,
            )
            .unwrap()
        });
        let service = Service::new(encoder, memory, generator, settings.limits.clone()).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async {
                let shutdown = async {
                    let _ = stopped.await;
                };
                racm3_serve::serve(listener, Arc::new(service), &settings, shutdown)
                    .await
                    .unwrap();
            });
        });
        Server {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP answer: status and JSON body (or the text, when it is not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

pub fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
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

pub fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut request = agent.post(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send_json(body))
}

pub fn post_raw(agent: &ureq::Agent, url: &str, token: &str, body: &[u8]) -> Answer {
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
pub fn post_huge(base: &str, path: &str, size: usize) -> Answer {
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

pub fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Answer {
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.call())
}

pub fn image_base64(path: &Path) -> String {
    BASE64.encode(std::fs::read(path).unwrap())
}

pub fn decoded_size(png: &Value) -> (u32, u32) {
    let bytes = BASE64.decode(png.as_str().unwrap()).unwrap();
    image::load_from_memory(&bytes)
        .unwrap()
        .to_rgb8()
        .dimensions()
}
