//! The multimodal document: ordered text and image parts with a stable id and its source.

use std::collections::BTreeMap;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::split::Split;

/// One image inside a document. `alt` is its caption: CM3 writes an image as
/// `<img alt="ALT" src="[IMAGE TOKENS]">`, so the caption travels with the image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePart {
    /// The caption ("grinning face"). May be empty.
    pub alt: String,
    /// The pixels, RGB; transparency has been composited over white.
    pub pixels: RgbImage,
}

/// A part of a document, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Plain text. Never empty, and never next to another text part.
    Text(String),
    /// An image with its caption.
    Image(ImagePart),
}

/// Where a document came from, and what else is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The dataset's name ("emoji", "fashion-mnist", a folder's name).
    pub dataset: String,
    /// What the document depicts. Documents of one entity (skin tones and vendors of one
    /// emoji) always share a split, so a held-out entity is never seen in training.
    pub entity: String,
    /// The split, derived deterministically from the entity.
    pub split: Split,
    /// Further captions that are also right (short names), for caption metrics.
    pub references: Vec<String>,
    /// Anything else the reader knows: vendor, category, class label.
    pub attributes: BTreeMap<String, String>,
}

/// A document: text and images in order, with a stable id.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    id: String,
    parts: Vec<Part>,
    /// Where it came from.
    pub source: Source,
}

impl Document {
    /// The document as JSON for people and scripts: id, caption, source and parts, with
    /// image sizes in place of pixels.
    pub fn summary_json(&self) -> serde_json::Value {
        let parts: Vec<_> = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => serde_json::json!({"text": text}),
                Part::Image(image) => serde_json::json!({
                    "image": {"alt": image.alt, "width": image.pixels.width(), "height": image.pixels.height()}
                }),
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "caption": self.caption(),
            "source": self.source,
            "parts": parts,
        })
    }

    /// An empty document; add parts with [`Document::push_text`] and [`Document::push_image`].
    pub fn new(id: impl Into<String>, source: Source) -> Self {
        Self {
            id: id.into(),
            parts: Vec::new(),
            source,
        }
    }

    /// The common case: one captioned image.
    pub fn image_caption(
        id: impl Into<String>,
        caption: impl Into<String>,
        pixels: RgbImage,
        source: Source,
    ) -> Self {
        let mut doc = Self::new(id, source);
        doc.push_image(caption, pixels);
        doc
    }

    /// Appends text. Adjacent text merges into one part and empty text is dropped, so
    /// every document has one canonical form and serializing it round-trips exactly.
    pub fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => self.parts.push(Part::Text(text.to_owned())),
        }
    }

    /// Appends a captioned image.
    pub fn push_image(&mut self, alt: impl Into<String>, pixels: RgbImage) {
        self.parts.push(Part::Image(ImagePart {
            alt: alt.into(),
            pixels,
        }));
    }

    /// The stable id, unique within its dataset ("emoji/twitter/1f600").
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The parts in reading order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The images, in order.
    pub fn images(&self) -> impl Iterator<Item = &ImagePart> {
        self.parts.iter().filter_map(|part| match part {
            Part::Image(image) => Some(image),
            Part::Text(_) => None,
        })
    }

    /// The document's caption: the first image's alt text, else its text.
    pub fn caption(&self) -> String {
        if let Some(image) = self.images().next() {
            return image.alt.clone();
        }
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) => Some(text.as_str()),
                Part::Image(_) => None,
            })
            .collect()
    }
}

/// `text` with control characters escaped (`\u{1b}`), for printing ids, captions, paths
/// and command lines that came from users or files: none reaches a terminal as an escape
/// sequence.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            dataset: "t".into(),
            entity: "e".into(),
            split: Split::Train,
            references: vec![],
            attributes: BTreeMap::new(),
        }
    }

    // Adjacent text parts merge and empty ones vanish, which makes the part list canonical.
    #[test]
    fn text_parts_are_canonical() {
        let mut doc = Document::new("d", source());
        doc.push_text("a");
        doc.push_text("");
        doc.push_text("b");
        doc.push_image("cap", RgbImage::new(2, 2));
        doc.push_text("c");
        assert_eq!(doc.parts().len(), 3);
        assert_eq!(doc.parts()[0], Part::Text("ab".into()));
        assert_eq!(doc.caption(), "cap");
    }
}
