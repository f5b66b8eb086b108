//! `racm3 serve` as a process: no acknowledged document is lost when it is killed, and a
//! server that cannot start says why. The API itself is tested in-process in
//! crates/serve/tests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn image_base64(path: &Path) -> String {
    BASE64.encode(std::fs::read(path).unwrap())
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

/// A process's resident and peak resident memory in MiB, from /proc.
#[cfg(target_os = "linux")]
fn resident_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|line| line.starts_with(name)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// The image bomb (16 blank 4096x4096 PNGs in one 1.5 MB body, which once took the
// server from 280 MB to 1.8 GB) is refused from the headers and leaves the server's memory
// as it was; a 4096x4096 image within the budget, added three times, is decoded one at a
// time and stored small. The bounds: the refused bomb adds at most 64 MiB to the warm
// server's peak, the three adds at most 160 MiB (measured here: 18 and 79 MiB).
#[cfg(target_os = "linux")]
#[test]
fn image_bombs_stay_within_a_memory_bound() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, &["--retrieval-only"]);
    let pid = server.child.id();
    let url = format!("{}/documents", server.url);
    let http = agent();
    let small = image_base64(&emoji_png("1f34e.png"));
    let warm = json!({"documents": [{"id": "warm/0", "caption": "apple", "image": small}]});
    assert_eq!(http.post(&url).send_json(&warm).unwrap().status(), 200);
    let (baseline, _) = resident_mib(pid);

    let mut png = Vec::new();
    image::RgbImage::from_pixel(4096, 4096, image::Rgb([255, 255, 255]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let blank = BASE64.encode(&png);
    let bomb: Vec<_> = (0..16)
        .map(|i| json!({"id": format!("bomb/{i}"), "caption": "blank", "image": blank}))
        .collect();
    let refused = http
        .post(&url)
        .send_json(json!({"documents": bomb}))
        .unwrap();
    assert_eq!(refused.status(), 413);
    let (after_bomb, peak_bomb) = resident_mib(pid);
    for i in 0..3 {
        let one =
            json!({"documents": [{"id": format!("big/{i}"), "caption": "blank", "image": blank}]});
        assert_eq!(http.post(&url).send_json(&one).unwrap().status(), 200);
    }
    let (after_big, peak) = resident_mib(pid);
    eprintln!(
        "server RSS: {baseline} MiB warm; {after_bomb} MiB (peak {peak_bomb}) after the refused bomb; \
         {after_big} MiB (peak {peak}) after three 4096x4096 adds"
    );
    assert!(
        peak_bomb <= baseline + 64,
        "the refused bomb raised the peak from {baseline} to {peak_bomb} MiB"
    );
    assert!(
        peak <= baseline + 160,
        "4096x4096 adds raised the peak from {baseline} to {peak} MiB"
    );
}
