//! Writes tests/fixtures/memory/v1: a tiny memory in format version 1 (four documents,
//! an hnsw8 graph, one removal), kept so that later versions prove they still read it.
//!
//! `cargo run -p racm3-memory --example make_memory_fixture`

use std::collections::BTreeMap;
use std::path::Path;

use racm3_data::{Document, Source, Split};
use racm3_memory::Memory;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/memory/v1");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let mut memory = Memory::create(&out, 4, "hnsw8", serde_json::json!({"encoder": "fixture"}))?;
    let mut documents = Vec::new();
    let mut keys = Vec::new();
    for (i, name) in ["red apple", "green apple", "blue car", "red car"]
        .iter()
        .enumerate()
    {
        let source = Source {
            dataset: "fixture".into(),
            entity: name.to_string(),
            split: Split::Train,
            references: vec![],
            attributes: BTreeMap::from([("index".to_string(), i.to_string())]),
        };
        let pixels = image::RgbImage::from_fn(2, 2, |x, y| {
            image::Rgb([i as u8 * 60, x as u8 * 200, y as u8 * 200])
        });
        let mut doc = Document::image_caption(format!("fixture/{i}"), *name, pixels, source);
        doc.push_text("a note");
        documents.push(doc);
        // Key i points along axis i.
        keys.extend((0..4).map(|axis| if axis == i { 1.0f32 } else { 0.0 }));
    }
    memory.add(&documents, &keys)?;
    memory.commit()?;
    memory.remove("fixture/3")?;
    memory.commit()?;
    println!("wrote {}", out.display());
    Ok(())
}
