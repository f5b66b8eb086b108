//! Dumps what `tools/image_keys.py` analyses: the committed (or given) CLIP's unit image and
//! text embeddings and the 64x64 pixels of the experiment memory's documents and of the
//! held-out Twemoji drawings (val and test), with each document's entity, vendor and split.
//!
//! cargo run --release -p racm3 --example dump_embeddings -- checkpoints/clip-emoji-small /tmp/emb

use std::io::Write;
use std::path::{Path, PathBuf};

use racm3::data::{Document, Split};
use racm3::experiment::MEMORY_SOURCES;
use racm3::progress::Quiet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, clip, out] = args.as_slice() else {
        return Err("usage: dump_embeddings CLIP_DIR OUT_DIR".into());
    };
    let clip = racm3::memory::load_clip(Path::new(clip))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let mut memory = Vec::new();
    for (dataset, split) in MEMORY_SOURCES {
        let documents = racm3::datasets::load(dataset, false, &Quiet)?.documents;
        memory.extend(
            documents
                .into_iter()
                .filter(|d| split.is_none_or(|split| d.source.split == split)),
        );
    }
    let val = racm3::datasets::twemoji_entities(Split::Val, &Quiet)?;
    let test = racm3::datasets::twemoji_entities(Split::Test, &Quiet)?;
    for (name, documents) in [("memory", &memory), ("val", &val), ("test", &test)] {
        dump(&clip, documents, &out, name)?;
        eprintln!("{name}: {} documents", documents.len());
    }
    Ok(())
}

fn dump(
    clip: &racm3::retrieve::ClipEncoder,
    documents: &[Document],
    out: &Path,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let images: Vec<_> = documents
        .iter()
        .map(|d| d.images().next().map(|image| image.pixels.clone()))
        .collect::<Option<_>>()
        .ok_or("a document without an image")?;
    let captions: Vec<String> = documents.iter().map(Document::caption).collect();
    let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
    let bytes =
        |values: Vec<f32>| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let pixels: Vec<u8> = images
        .iter()
        .flat_map(|i| i.as_raw().iter().copied())
        .collect();
    std::fs::write(out.join(format!("{name}-pixels.u8")), pixels)?;
    std::fs::write(
        out.join(format!("{name}-image.f32")),
        bytes(clip.embed_images(&images)?),
    )?;
    std::fs::write(
        out.join(format!("{name}-text.f32")),
        bytes(clip.embed_texts(&captions)?),
    )?;
    let mut table = std::fs::File::create(out.join(format!("{name}.tsv")))?;
    for document in documents {
        let vendor = document.source.attributes.get("vendor");
        writeln!(
            table,
            "{}\t{}\t{:?}",
            document.source.entity,
            vendor.map_or("", String::as_str),
            document.source.split,
        )?;
    }
    Ok(())
}
