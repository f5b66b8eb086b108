//! The server's own guards, in process: settings that would mislead are refused or warned
//! about, and a client that never finishes its headers loses its connection.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use racm3_serve::Settings;

#[test]
fn an_empty_token_is_refused_and_an_open_network_bind_warned_about() {
    for empty in ["", "  "] {
        let settings = Settings {
            token: Some(empty.to_owned()),
            ..Settings::default()
        };
        let problem = settings.validate().unwrap_err();
        assert!(problem.contains("token is empty"), "{problem}");
    }
    let open = Settings {
        address: SocketAddr::from(([0, 0, 0, 0], 8080)),
        ..Settings::default()
    };
    assert!(open.validate().is_ok());
    assert!(open.warning().unwrap().contains("no --token"));
    let guarded = Settings {
        token: Some("s3cret".into()),
        ..open.clone()
    };
    assert_eq!(guarded.warning(), None);
    assert_eq!(
        Settings::default().warning(),
        None,
        "loopback needs no token"
    );
}

// A slow-loris client: half a request, then silence. The server closes the connection
// once the header timeout passes, and goes on answering others.
#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let settings = Settings {
        header_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let server = Server::start(&memory, true, settings);
    let address = server.url.trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(address).unwrap();
    write!(slow, "GET /health HTTP/1.1\r\nHost: {address}\r\nX-Slow: ").unwrap();
    // Far longer than the timeout, so only a server that never closes fails the read.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let closed = slow.read_to_end(&mut answer);
    assert!(closed.is_ok(), "the connection was not closed: {closed:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("200 OK"),
        "a half request was answered: {text}"
    );
    // An idle kept-alive connection is closed by the same timeout once it has been
    // answered: the wait for the next request's headers is a header read too.
    let mut idle = std::net::TcpStream::connect(address).unwrap();
    write!(idle, "GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let closed = idle.read_to_end(&mut answer);
    assert!(
        closed.is_ok(),
        "the idle connection was not closed: {closed:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let health = get(&agent(), &format!("{}/health", server.url), None);
    assert_eq!(health.status, 200);
}

// A command-line writer and the server on one memory: a document added and committed
// outside the server before its first POST, and the server's own, are both on disk
// afterwards; while the server holds the memory, another writer is refused by name.
#[test]
fn the_server_and_another_writer_never_drop_each_others_documents() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, true, Settings::default());
    let clip =
        racm3::memory::load_clip(&racm3_testing::repo_root().join("checkpoints/clip-emoji-small"))
            .unwrap();
    let outside = racm3::data::Document::image_caption(
        "outside/purple",
        "purple thing",
        image::RgbImage::from_pixel(64, 64, image::Rgb([128, 0, 128])),
        racm3::data::Source {
            dataset: "outside".into(),
            entity: "purple".into(),
            split: racm3::data::Split::Train,
            references: vec!["purple thing".into()],
            attributes: Default::default(),
        },
    );
    let mut writer = racm3::memory::open(&memory).unwrap();
    racm3::memory::add_new_documents(&mut writer, &clip, vec![outside], &racm3::data::Silent)
        .unwrap();
    drop(writer);

    let face = image_base64(&emoji_png("1f600.png"));
    let added = post(
        &agent(),
        &format!("{}/documents", server.url),
        None,
        &serde_json::json!({"documents": [{"id": "server/face", "caption": "a face", "image": face}]}),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let mut late = racm3::memory::open(&memory).unwrap();
    let err = racm3::memory::remove_documents(&mut late, &["outside/purple".into()]).unwrap_err();
    assert!(
        err.to_string().contains("another process is writing"),
        "{err}"
    );
    drop(late);
    drop(server);
    let after = racm3::memory::open(&memory).unwrap();
    assert!(after.row_of("outside/purple").is_some());
    assert!(after.row_of("server/face").is_some());
}

// Sixteen blank 4096x4096 PNGs in one add (a 1.5 MB body) are refused from their headers
// with 413 naming the request's pixel budget; an image that passes is stored scaled down
// to the stored side, shape kept.
#[test]
fn adds_are_bounded_in_pixels_and_stored_small() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, true, Settings::default());
    let png = |width, height| {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
    };
    let blank = png(4096, 4096);
    let bomb: Vec<_> = (0..16)
        .map(|i| serde_json::json!({"id": format!("bomb/{i}"), "caption": "blank", "image": blank}))
        .collect();
    let url = format!("{}/documents", server.url);
    let refused = post(
        &agent(),
        &url,
        None,
        &serde_json::json!({"documents": bomb}),
    );
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("request_pixels"),
        "{}",
        refused.body
    );
    let wide = serde_json::json!({"documents": [{"id": "wide/one", "caption": "a wide white thing", "image": png(1000, 600)}]});
    let added = post(&agent(), &url, None, &wide);
    assert_eq!(added.status, 200, "{}", added.body);
    drop(server);
    let stored = racm3::memory::open(&memory).unwrap();
    assert!(stored.row_of("bomb/0").is_none());
    let row = stored.row_of("wide/one").unwrap();
    let document = stored.document(row).unwrap();
    let image = &document.images().next().unwrap().pixels;
    assert_eq!(image.dimensions(), (256, 154));
}

/// Sampling values no task can use, with the setting each must be refused for; the CLI's
/// test (`crates/cli/tests/hostile.rs`) refuses the same table with the same words.
const OUT_OF_RANGE: [(&str, &str); 7] = [
    ("cfg", "1e38"),
    ("temperature", "1e-45"),
    ("temperature", "-1"),
    ("top_p", "2"),
    ("top_k", "0"),
    ("retrieval_guidance", "-1"),
    ("copy_bias", "-21"),
];

#[test]
fn out_of_range_sampling_values_are_refused_by_name() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let server = Server::start(&memory, false, Settings::default());
    for (name, value) in OUT_OF_RANGE {
        let body: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"text": "red apple", "{name}": {value}}}"#))
                .unwrap();
        let refused = post(&agent(), &format!("{}/generate", server.url), None, &body);
        assert_eq!(refused.status, 422, "{name} {value}: {}", refused.body);
        let error = refused.body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{name} is ")),
            "{name} {value}: {error}"
        );
    }
}
