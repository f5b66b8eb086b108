//! A stored document: its JSON description, then its images as PNG (lossless, and
//! what every image tool opens).

use std::path::Path;

use racm3_data::{Document, Part, Source};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::file::Reader;

#[derive(Serialize, Deserialize)]
struct Described {
    id: String,
    parts: Vec<DescribedPart>,
    source: Source,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DescribedPart {
    Text(String),
    /// An image: its caption and the index of its PNG among the record's images.
    Image {
        alt: String,
        png: usize,
    },
}

/// Appends one document's record to `out`: u32 length, then JSON, u32 image count, and
/// each image as u32 length + PNG bytes.
pub(crate) fn encode(document: &Document, out: &mut Vec<u8>) -> Result<()> {
    let mut pngs: Vec<Vec<u8>> = Vec::new();
    let mut parts = Vec::with_capacity(document.parts().len());
    for part in document.parts() {
        match part {
            Part::Text(text) => parts.push(DescribedPart::Text(text.clone())),
            Part::Image(image) => {
                let png = racm3_data::encode_png(&image.pixels, "image").map_err(|err| {
                    Error::Document {
                        id: document.id().to_owned(),
                        problem: err.to_string(),
                    }
                })?;
                parts.push(DescribedPart::Image {
                    alt: image.alt.clone(),
                    png: pngs.len(),
                });
                pngs.push(png);
            }
        }
    }
    let described = Described {
        id: document.id().to_owned(),
        parts,
        source: document.source.clone(),
    };
    let json = serde_json::to_vec(&described).expect("plain data serializes");
    let start = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(pngs.len() as u32).to_le_bytes());
    for png in &pngs {
        out.extend_from_slice(&(png.len() as u32).to_le_bytes());
        out.extend_from_slice(png);
    }
    let record_len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&record_len.to_le_bytes());
    Ok(())
}

/// Splits a documents payload into records: for each, its id and its byte range.
pub(crate) fn index(payload: &[u8], path: &Path) -> Result<Vec<(String, std::ops::Range<usize>)>> {
    let mut reader = Reader::new(payload, path);
    let mut records = Vec::new();
    let mut offset = 0;
    while !reader.is_done() {
        let len = reader.u32()? as usize;
        let record = reader.take(len)?;
        let mut inner = Reader::new(record, path);
        let json_len = inner.u32()? as usize;
        let id = serde_json::from_slice::<IdOnly>(inner.take(json_len)?)
            .map_err(|err| Error::corrupt(path, format!("record {}: {err}", records.len())))?
            .id;
        records.push((id, offset + 4..offset + 4 + len));
        offset += 4 + len;
    }
    Ok(records)
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Rebuilds the document of one record.
pub(crate) fn decode(record: &[u8], path: &Path) -> Result<Document> {
    let mut reader = Reader::new(record, path);
    let json_len = reader.u32()? as usize;
    let described: Described = serde_json::from_slice(reader.take(json_len)?)
        .map_err(|err| Error::corrupt(path, format!("document record: {err}")))?;
    let image_count = reader.u32()? as usize;
    let mut pngs = Vec::with_capacity(image_count.min(1024));
    for _ in 0..image_count {
        let len = reader.u32()? as usize;
        pngs.push(reader.take(len)?);
    }
    let mut document = Document::new(described.id.clone(), described.source);
    for part in described.parts {
        match part {
            DescribedPart::Text(text) => document.push_text(&text),
            DescribedPart::Image { alt, png } => {
                let bytes = pngs.get(png).ok_or_else(|| {
                    Error::corrupt(
                        path,
                        format!("document '{}': missing image {png}", described.id),
                    )
                })?;
                let pixels = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
                    .map_err(|err| {
                        Error::corrupt(path, format!("document '{}': {err}", described.id))
                    })?
                    .to_rgb8();
                document.push_image(alt, pixels);
            }
        }
    }
    Ok(document)
}
