//! Key layouts on the committed CLIP: joint+image keys carry RA-CM3's joint key and the
//! image embedding, joint+pixels keys the joint key and the pixel key, joint+text+pixels
//! keys the text embedding between them; text queries score as with joint keys (caption
//! against caption with a text part), image queries image against image, and a memory
//! refuses an encoder of another layout.

use std::path::{Path, PathBuf};

use candle_core::Device;
use racm3_data::{Document, Source, Split};
use racm3_memory::{Memory, dot};
use racm3_retrieve::{ClipEncoder, KeyLayout, Query, RetrievalPolicy, retrieve_for_query};

fn committed_clip() -> ClipEncoder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/clip-emoji-small");
    ClipEncoder::load(&dir, &Device::Cpu).unwrap()
}

fn picture(rgb: [u8; 3], square: bool) -> image::RgbImage {
    image::RgbImage::from_fn(64, 64, |x, y| {
        let inside = if square {
            (16..48).contains(&x) && (16..48).contains(&y)
        } else {
            (24..40).contains(&y)
        };
        image::Rgb(if inside { rgb } else { [255, 255, 255] })
    })
}

/// Four captioned pictures and one text-only document.
fn documents() -> Vec<Document> {
    let source = |entity: &str| Source {
        dataset: "test".into(),
        entity: entity.into(),
        split: Split::Train,
        references: vec![],
        attributes: Default::default(),
    };
    let mut documents = Vec::new();
    for (name, rgb, square) in [
        ("red square", [220, 30, 30], true),
        ("green stripe", [30, 180, 40], false),
        ("blue square", [30, 60, 220], true),
        ("yellow stripe", [240, 220, 20], false),
    ] {
        let mut document = Document::new(name.replace(' ', "-"), source(name));
        document.push_image(name, picture(rgb, square));
        documents.push(document);
    }
    let mut text_only = Document::new("note", source("note"));
    text_only.push_text("a note about a red square");
    documents.push(text_only);
    documents
}

fn rows(keys: &[f32], dim: usize) -> Vec<&[f32]> {
    keys.chunks_exact(dim).collect()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn joint_and_image_keys_hold_the_joint_key_and_the_image_embedding() {
    let joint = committed_clip();
    let both = committed_clip()
        .with_layout(KeyLayout::JointAndImage)
        .unwrap();
    let dim = joint.dim();
    assert_eq!(both.key_dim(), 2 * dim);
    assert_eq!(both.describe()["keys"], "joint+image");
    assert_eq!(both.describe()["dim"], 2 * dim);
    let documents = documents();
    let joint_keys = joint.document_keys(&documents).unwrap();
    let both_keys = both.document_keys(&documents).unwrap();
    let images: Vec<_> = documents[..4]
        .iter()
        .map(|d| d.images().next().unwrap().pixels.clone())
        .collect();
    let image_embeddings = joint.embed_images(&images).unwrap();
    let half = std::f32::consts::FRAC_1_SQRT_2;
    for (index, (key, joint_key)) in rows(&both_keys, 2 * dim)
        .into_iter()
        .zip(rows(&joint_keys, dim))
        .enumerate()
    {
        assert!(
            close(dot(key, key), 1.0) || index == 4,
            "key {index} is not a unit vector"
        );
        for (value, expected) in key[..dim].iter().zip(joint_key) {
            assert!(close(*value, expected * half), "joint half of key {index}");
        }
        let image_half = &key[dim..];
        if index < 4 {
            let embedding = &image_embeddings[index * dim..(index + 1) * dim];
            for (value, expected) in image_half.iter().zip(embedding) {
                assert!(close(*value, expected * half), "image half of key {index}");
            }
        } else {
            assert!(
                image_half.iter().all(|v| *v == 0.0),
                "a text-only key has no image half"
            );
        }
    }
    // A text query scores every document as the joint layout does: the same cosines.
    let text = Query {
        text: Some("a red square"),
        image: None,
    };
    let (joint_query, both_query) = (
        joint.query_key(&text).unwrap().vector,
        both.query_key(&text).unwrap().vector,
    );
    for (key, joint_key) in rows(&both_keys, 2 * dim)
        .into_iter()
        .zip(rows(&joint_keys, dim))
    {
        assert!(close(dot(&both_query, key), dot(&joint_query, joint_key)));
    }
    // An image query scores image against image: the cosine of the two image embeddings,
    // and zero against a document with no image.
    let query_image = picture([200, 40, 40], true);
    let image_query = both
        .query_key(&Query {
            text: None,
            image: Some(&query_image),
        })
        .unwrap()
        .vector;
    let query_embedding = joint
        .embed_images(std::slice::from_ref(&query_image))
        .unwrap();
    for (index, key) in rows(&both_keys, 2 * dim).into_iter().enumerate() {
        let expected = if index < 4 {
            dot(
                &query_embedding,
                &image_embeddings[index * dim..(index + 1) * dim],
            )
        } else {
            0.0
        };
        assert!(
            close(dot(&image_query, key), expected),
            "image query against key {index}"
        );
    }
    // Two documents' redundancy is their joint keys' cosine in either layout.
    let (a, b) = (rows(&both_keys, 2 * dim)[0], rows(&both_keys, 2 * dim)[2]);
    let (ja, jb) = (rows(&joint_keys, dim)[0], rows(&joint_keys, dim)[2]);
    assert!(close(
        KeyLayout::JointAndImage.joint_similarity(dim, a, b),
        KeyLayout::Joint.joint_similarity(dim, ja, jb)
    ));
}

fn memory_of(dir: &Path, encoder: &ClipEncoder) -> Memory {
    let documents = documents();
    let mut memory = Memory::create(dir, encoder.key_dim(), "flat", encoder.describe()).unwrap();
    memory
        .add(&documents, &encoder.document_keys(&documents).unwrap())
        .unwrap();
    memory.commit().unwrap();
    memory
}

#[test]
fn an_image_query_finds_the_same_picture_and_a_memory_refuses_another_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("memory");
    let both = committed_clip()
        .with_layout(KeyLayout::JointAndImage)
        .unwrap();
    let memory = memory_of(&path, &both);
    let reopened = Memory::open(&path).unwrap();
    assert_eq!(
        KeyLayout::of_description(reopened.encoder()).unwrap(),
        KeyLayout::JointAndImage
    );
    let policy = RetrievalPolicy::top(1).without_skips();
    for (id, rgb, square) in [
        ("green-stripe", [30, 180, 40], false),
        ("blue-square", [30, 60, 220], true),
    ] {
        let image = picture(rgb, square);
        let found = retrieve_for_query(
            &both,
            &memory,
            &Query {
                text: None,
                image: Some(&image),
            },
            &policy,
        )
        .unwrap();
        assert_eq!(found.documents[0].id, id);
        assert!(close(found.documents[0].score, 1.0), "{found:?}");
    }
    let error = retrieve_for_query(
        &committed_clip(),
        &memory,
        &Query {
            text: Some("a red square"),
            image: None,
        },
        &policy,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("joint+image keys") && error.contains("joint keys"),
        "{error}"
    );
    assert!(KeyLayout::from_name("image").is_err());
    assert!(KeyLayout::of_description(&serde_json::json!({"keys": 3})).is_err());
    assert_eq!(
        KeyLayout::of_description(&serde_json::json!({})).unwrap(),
        KeyLayout::Joint
    );
}

#[test]
fn joint_and_pixels_keys_hold_the_joint_key_and_the_pixel_key() {
    let joint = committed_clip();
    let pixel_keys = joint
        .pixel_keys()
        .expect("the committed CLIP has pixel keys")
        .clone();
    let pixels = committed_clip()
        .with_layout(KeyLayout::JointAndPixels)
        .unwrap();
    let (dim, extra) = (joint.dim(), pixel_keys.dims());
    assert_eq!(pixels.key_dim(), dim + extra);
    assert_eq!(pixels.describe()["keys"], "joint+pixels");
    assert_eq!(pixels.describe()["joint_dim"], dim);
    let documents = documents();
    let joint_keys = joint.document_keys(&documents).unwrap();
    let keys = pixels.document_keys(&documents).unwrap();
    let images: Vec<_> = documents[..4]
        .iter()
        .map(|d| d.images().next().unwrap().pixels.clone())
        .collect();
    let pixel_embeddings = pixel_keys.embed(&images).unwrap();
    let half = std::f32::consts::FRAC_1_SQRT_2;
    for (index, (key, joint_key)) in rows(&keys, dim + extra)
        .into_iter()
        .zip(rows(&joint_keys, dim))
        .enumerate()
    {
        for (value, expected) in key[..dim].iter().zip(joint_key) {
            assert!(close(*value, expected * half), "joint part of key {index}");
        }
        let expected: Vec<f32> = match index {
            0..4 => pixel_embeddings[index * extra..(index + 1) * extra].to_vec(),
            _ => vec![0.0; extra],
        };
        for (value, expected) in key[dim..].iter().zip(expected) {
            assert!(close(*value, expected * half), "pixel part of key {index}");
        }
    }
    // Text queries score the joint part; image queries the pixel keys' cosine.
    let text = Query {
        text: Some("a red square"),
        image: None,
    };
    let text_query = pixels.query_key(&text).unwrap().vector;
    let joint_query = joint.query_key(&text).unwrap().vector;
    let query_image = picture([200, 40, 40], true);
    let image_query = pixels
        .query_key(&Query {
            text: None,
            image: Some(&query_image),
        })
        .unwrap()
        .vector;
    let query_pixels = pixel_keys
        .embed(std::slice::from_ref(&query_image))
        .unwrap();
    for (index, (key, joint_key)) in rows(&keys, dim + extra)
        .into_iter()
        .zip(rows(&joint_keys, dim))
        .enumerate()
    {
        assert!(close(dot(&text_query, key), dot(&joint_query, joint_key)));
        let expected = match index {
            0..4 => dot(
                &query_pixels,
                &pixel_embeddings[index * extra..(index + 1) * extra],
            ),
            _ => 0.0,
        };
        assert!(
            close(dot(&image_query, key), expected),
            "image query against key {index}"
        );
    }
    // An image-only query needs the image itself, not its CLIP embedding.
    let embedding = joint
        .embed_images(std::slice::from_ref(&query_image))
        .unwrap();
    assert!(pixels.query_of_embeddings(None, Some(&embedding)).is_err());
}

#[test]
fn joint_and_pixels_needs_pixel_keys_and_a_memory_of_its_layout() {
    let clip_dir = tempfile::tempdir().unwrap();
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/clip-emoji-small");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(committed.join(file), clip_dir.path().join(file)).unwrap();
    }
    let without = ClipEncoder::load(clip_dir.path(), &Device::Cpu).unwrap();
    assert!(without.pixel_keys().is_none());
    let error = without
        .with_layout(KeyLayout::JointAndPixels)
        .unwrap_err()
        .to_string();
    assert!(error.contains("fit-pixel-keys"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let pixels = committed_clip()
        .with_layout(KeyLayout::JointAndPixels)
        .unwrap();
    let memory = memory_of(&dir.path().join("memory"), &pixels);
    let reopened = Memory::open(&dir.path().join("memory")).unwrap();
    let layout = KeyLayout::of_description(reopened.encoder()).unwrap();
    assert_eq!(layout, KeyLayout::JointAndPixels);
    assert_eq!(
        layout
            .joint_dim(reopened.encoder(), reopened.dim())
            .unwrap(),
        pixels.dim()
    );
    let image = picture([30, 60, 220], true);
    let query = Query {
        text: None,
        image: Some(&image),
    };
    let policy = RetrievalPolicy::top(1).without_skips();
    let found = retrieve_for_query(&pixels, &memory, &query, &policy).unwrap();
    assert_eq!(found.documents[0].id, "blue-square");
    assert!(close(found.documents[0].score, 1.0), "{found:?}");
    let image_keys = committed_clip()
        .with_layout(KeyLayout::JointAndImage)
        .unwrap();
    let error = retrieve_for_query(&image_keys, &memory, &query, &policy)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("joint+pixels keys") && error.contains("joint+image keys"),
        "{error}"
    );
}

#[test]
fn joint_text_and_pixels_keys_rank_a_caption_by_caption_and_skip_by_the_joint_score() {
    let joint = committed_clip();
    let pixel_keys = joint.pixel_keys().unwrap().clone();
    let keyed = committed_clip()
        .with_layout(KeyLayout::JointTextAndPixels)
        .unwrap();
    let (dim, extra) = (joint.dim(), pixel_keys.dims());
    assert_eq!(keyed.key_dim(), 2 * dim + extra);
    assert_eq!(keyed.describe()["keys"], "joint+text+pixels");
    // Another rendition of the red square's entity: same caption, another picture.
    let mut documents = documents();
    let mut rendition = Document::new("red-square-2", documents[0].source.clone());
    rendition.push_image("red square", picture([220, 30, 30], false));
    documents.push(rendition);
    let joint_keys = joint.document_keys(&documents).unwrap();
    let keys = keyed.document_keys(&documents).unwrap();
    let captions: Vec<String> = documents
        .iter()
        .map(|d| racm3_retrieve::document_text(d).unwrap())
        .collect();
    let caption_refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let texts = joint.embed_texts(&caption_refs).unwrap();
    let third = 1.0 / 3f32.sqrt();
    for (index, (key, joint_key)) in rows(&keys, 2 * dim + extra)
        .into_iter()
        .zip(rows(&joint_keys, dim))
        .enumerate()
    {
        assert!(close(dot(key, key), 1.0) || index == 4, "key {index}");
        for (value, expected) in key[..dim].iter().zip(joint_key) {
            assert!(close(*value, expected * third), "joint part of key {index}");
        }
        for (value, expected) in key[dim..2 * dim].iter().zip(&texts[index * dim..]) {
            assert!(close(*value, expected * third), "text part of key {index}");
        }
        if index == 4 {
            assert!(
                key[2 * dim..].iter().all(|v| *v == 0.0),
                "no picture, no pixels"
            );
        }
    }
    // A caption scores mostly caption against caption, the rest against the joint key; its
    // near-copy score is its cosine with the joint key, as a joint-keyed memory scores it.
    let weight = racm3_retrieve::CAPTION_SCORE_WEIGHT;
    let text = Query {
        text: Some("red square"),
        image: None,
    };
    let (query, joint_query) = (
        keyed.query_key(&text).unwrap().vector,
        joint.query_key(&text).unwrap().vector,
    );
    for (index, (key, joint_key)) in rows(&keys, 2 * dim + extra)
        .into_iter()
        .zip(rows(&joint_keys, dim))
        .enumerate()
    {
        let score = dot(&query, key);
        let (by_caption, by_joint) = (
            dot(&joint_query, &texts[index * dim..(index + 1) * dim]),
            dot(&joint_query, joint_key),
        );
        assert!(close(
            score,
            weight * by_caption + (1.0 - weight) * by_joint
        ));
        let joint_text = &keyed.query_key(&text).unwrap().joint;
        let near_copy = KeyLayout::JointTextAndPixels.near_copy_score(dim, joint_text, key);
        assert!(close(near_copy, by_joint), "key {index}");
    }
    // Both renditions share the caption and come first, and neither is skipped as a near
    // copy; the text-only note, queried by its own text, is one (its joint key is its text).
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Memory::create(
        &dir.path().join("memory"),
        keyed.key_dim(),
        "flat",
        keyed.describe(),
    )
    .unwrap();
    memory.add(&documents, &keys).unwrap();
    let policy = RetrievalPolicy {
        pairwise_threshold: f32::INFINITY,
        ..RetrievalPolicy::top(2)
    };
    let found = retrieve_for_query(&keyed, &memory, &text, &policy).unwrap();
    let mut ids: Vec<&str> = found.documents.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["red-square", "red-square-2"], "{found:?}");
    assert!(
        found.documents.iter().all(|d| d.score > weight),
        "{found:?}"
    );
    assert_eq!(found.near_copies, 0);
    let note = Query {
        text: Some("a note about a red square"),
        image: None,
    };
    let found = retrieve_for_query(&keyed, &memory, &note, &policy).unwrap();
    assert_eq!(found.near_copies, 1, "{found:?}");
    assert!(found.documents.iter().all(|d| d.id != "note"));
    // An image alone is scored by its pixel key, text and image together by the joint key.
    let image = picture([30, 60, 220], true);
    let by_image = Query {
        text: None,
        image: Some(&image),
    };
    let found = retrieve_for_query(&keyed, &memory, &by_image, &policy.without_skips()).unwrap();
    assert_eq!(found.documents[0].id, "blue-square");
    assert!(close(found.documents[0].score, 1.0));
    // Its near-copy skip compares the paper's score, the picture's CLIP embedding against
    // the joint key, not the pixel score of 1: a threshold just above the paper's score
    // keeps the document first, one just below skips it.
    let image_embedding = joint.query_key(&by_image).unwrap().vector;
    let paper = dot(&image_embedding, rows(&joint_keys, dim)[2]);
    assert!(paper < 0.95, "{paper}");
    for (threshold, kept) in [(paper + 0.02, true), (paper - 0.02, false)] {
        let policy = RetrievalPolicy {
            query_threshold: threshold,
            ..policy
        };
        let found = retrieve_for_query(&keyed, &memory, &by_image, &policy).unwrap();
        let first = found.documents.first().map(|d| d.id.as_str());
        assert_eq!(first == Some("blue-square"), kept, "{found:?}");
        assert_eq!(found.near_copies >= 1, !kept, "{found:?}");
    }
    let both = Query {
        text: Some("blue square"),
        image: Some(&image),
    };
    let both_query = keyed.query_key(&both).unwrap().vector;
    let joint_both = joint.query_key(&both).unwrap().vector;
    for (key, joint_key) in rows(&keys, 2 * dim + extra)
        .into_iter()
        .zip(rows(&joint_keys, dim))
    {
        assert!(close(dot(&both_query, key), dot(&joint_both, joint_key)));
    }
}
