//! CI's short run of the `api_bodies` fuzz target (tools/fuzz.sh runs it coverage-guided):
//! bodies made of the API's own field names with values of every type and extreme, and
//! plain arbitrary bytes, sent to every endpoint of a retrieval-only server. Each answer is
//! a success or a 4xx naming the problem (503 for the generator this server lacks), never
//! a 500 or an internal trace, and the server keeps answering.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use racm3_serve::Settings;
use serde_json::{Value, json};

const FIELDS: [&str; 20] = [
    "text",
    "image",
    "k",
    "samples",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "query_threshold",
    "retrieval_guidance",
    "copy_bias",
    "cfg",
    "num_images",
    "deduplicate",
    "embedding_input",
    "image_url",
    "documents",
    "caption",
    "id",
    "steps",
];

const ENDPOINTS: [&str; 5] = [
    "/retrieve",
    "/generate",
    "/caption",
    "/knn-service",
    "/documents",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0.0, -1.0, 0.5, 1.0, 2.0, 1e-320, 1e-45, 1e38, 3.4e38, 1e300, -1e300, 255.5,
        ])
        .prop_map(Value::from),
    ]
}

fn string(image: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,40}".prop_map(Value::from),
        Just(Value::from("red apple")),
        Just(Value::from(image.clone())),
        Just(Value::from(format!("data:image/png;base64,{image}"))),
        Just(Value::from(image[..image.len() / 2].to_owned())),
        Just(Value::from("\u{1b}[31m../../etc/passwd\u{0}")),
    ]
}

fn value(image: String) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        string(image),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(number(), 250..260).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), inner, 0..4)
                .prop_map(|fields| {
                    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
        ]
    })
}

/// A valid body of each endpoint, in [`ENDPOINTS`] order.
fn valid(image: &str) -> [Value; 5] {
    [
        json!({"text": "red apple", "k": 2}),
        json!({"text": "red apple"}),
        json!({"image": image}),
        json!({"text": "apple", "num_images": 3}),
        json!({"documents": [{"caption": "green tree", "image": image}]}),
    ]
}

/// An endpoint and a body for it: its valid body with up to three fields set to anything
/// (a document's fields too), or arbitrary bytes.
fn request(image: String) -> impl Strategy<Value = (usize, Vec<u8>)> {
    let changes = prop::collection::vec(
        (
            prop::sample::select(FIELDS.to_vec()),
            value(image.clone()),
            any::<bool>(),
        ),
        0..4,
    );
    let edited = (0..ENDPOINTS.len(), changes).prop_map(move |(endpoint, changes)| {
        let mut body = valid(&image)[endpoint].clone();
        for (field, value, in_document) in changes {
            let target = match body.pointer_mut("/documents/0") {
                Some(document) if in_document && document.is_object() => document,
                _ => &mut body,
            };
            if let Some(fields) = target.as_object_mut() {
                fields.insert(field.to_owned(), value);
            }
        }
        (endpoint, serde_json::to_vec(&body).unwrap())
    });
    prop_oneof![
        6 => edited,
        1 => (0..ENDPOINTS.len(), prop::collection::vec(any::<u8>(), 0..256)),
    ]
}

#[test]
fn arbitrary_bodies_get_a_clear_answer() {
    let work = tempfile::tempdir().unwrap();
    let memory = build_memory(work.path());
    let settings = Settings {
        token: Some("s3cret".into()),
        ..Settings::default()
    };
    let server = Server::start(&memory, true, settings);
    let http = agent();
    let image = image_base64(&emoji_png("1f600.png"));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let strategy = request(image);
    runner
        .run(&strategy, |(endpoint, body)| {
            let path = ENDPOINTS[endpoint];
            let answer = post_raw(&http, &format!("{}{path}", server.url), "s3cret", &body);
            *statuses
                .lock()
                .unwrap()
                .entry((path, answer.status))
                .or_insert(0) += 1;
            let text = answer.body.to_string();
            let shown = String::from_utf8_lossy(&body);
            prop_assert!(
                matches!(answer.status, 200 | 400 | 413 | 415 | 422)
                    || (answer.status == 503 && path != "/retrieve"),
                "{path} {shown}: {} {text}",
                answer.status
            );
            prop_assert!(
                !text.contains("panicked") && !text.contains("candle"),
                "{path} {shown}: {text}"
            );
            Ok(())
        })
        .unwrap();
    let health = get(&http, &format!("{}/health", server.url), None);
    assert_eq!(health.status, 200);
    // The bodies reached past the JSON parser: some were accepted, some refused by value.
    let statuses = statuses.into_inner().unwrap();
    let answered = |status: u16| statuses.iter().any(|((_, s), _)| *s == status);
    assert!(answered(200) && answered(422), "{statuses:?}");
}
