//! CM3 serialization: a document as one token sequence in the shared id space.
//!
//! Text is BPE ids. An image is `<img alt="` caption `" src="` codebook ids `">`, the HTML
//! form CM3 (Aghajanyan et al., 2022, arXiv:2201.07520) trains on, with the three frame
//! pieces as single special tokens. Decoding is exact: `decode(encode(doc)) == doc` for a
//! document in canonical form (no empty or adjacent text segments), given a lossless text
//! tokenizer.

use racm3_data::{Document, ImagePart, Part};

use crate::error::{Error, Result};
use crate::ids::{IdSpace, Special, Token};
use crate::text::TextTokenizer;

/// A document with its images as codebook indices: what the token sequence holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text.
    Text(String),
    /// An image: its caption and its codebook indices in raster order.
    Image {
        /// The caption (`alt`).
        alt: String,
        /// Codebook indices, row by row.
        codes: Vec<u32>,
    },
}

/// The canonical form of a segment list: empty text dropped, adjacent text merged. This
/// is what [`Cm3Codec::decode`] returns.
pub fn canonical(segments: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for segment in segments {
        match (segment, out.last_mut()) {
            (Segment::Text(text), _) if text.is_empty() => {}
            (Segment::Text(text), Some(Segment::Text(last))) => last.push_str(&text),
            (segment, _) => out.push(segment),
        }
    }
    out
}

/// The segments of a document, with each image turned into codes by `image_codes` (an
/// image tokenizer such as the VQGAN).
pub fn segments_of(
    document: &Document,
    mut image_codes: impl FnMut(&ImagePart) -> Result<Vec<u32>>,
) -> Result<Vec<Segment>> {
    document
        .parts()
        .iter()
        .map(|part| match part {
            Part::Text(text) => Ok(Segment::Text(text.clone())),
            Part::Image(image) => Ok(Segment::Image {
                alt: image.alt.clone(),
                codes: image_codes(image)?,
            }),
        })
        .collect()
}

/// Encodes documents to token ids and back.
#[derive(Debug, Clone)]
pub struct Cm3Codec {
    ids: IdSpace,
    text: TextTokenizer,
}

impl Cm3Codec {
    /// A codec over `text`'s vocabulary and a codebook of `codebook` entries.
    pub fn new(text: TextTokenizer, codebook: u32) -> Self {
        Self {
            ids: IdSpace::new(text.vocab_size(), codebook),
            text,
        }
    }

    /// The id layout.
    pub fn ids(&self) -> &IdSpace {
        &self.ids
    }

    /// The text tokenizer.
    pub fn text(&self) -> &TextTokenizer {
        &self.text
    }

    /// The token ids of a document (no `<eos>`: sequences are assembled by the caller).
    pub fn encode(&self, segments: &[Segment]) -> Result<Vec<u32>> {
        let mut tokens = Vec::new();
        for segment in segments {
            match segment {
                Segment::Text(text) => tokens.extend(self.text.encode(text)?),
                Segment::Image { alt, codes } => {
                    tokens.push(self.ids.special(Special::ImgAlt));
                    tokens.extend(self.text.encode(alt)?);
                    tokens.push(self.ids.special(Special::ImgSrc));
                    for &code in codes {
                        tokens.push(self.ids.image(code)?);
                    }
                    tokens.push(self.ids.special(Special::ImgEnd));
                }
            }
        }
        Ok(tokens)
    }

    /// The document in `tokens`. One trailing `<eos>` is allowed; any other structure that
    /// a document cannot have (a `<mask:i>`, an image id outside `src="`, an unclosed
    /// image) is an error naming the position.
    pub fn decode(&self, tokens: &[u32]) -> Result<Vec<Segment>> {
        let tokens = match tokens.split_last() {
            Some((&last, rest)) if last == self.ids.special(Special::Eos) => rest,
            _ => tokens,
        };
        let malformed = |position: usize, problem: &str| Error::Malformed {
            position,
            problem: problem.to_owned(),
        };
        let mut segments = Vec::new();
        let mut position = 0;
        while position < tokens.len() {
            match self.ids.classify(tokens[position])? {
                Token::Text(_) => {
                    let end = self.text_run_end(tokens, position)?;
                    segments.push(Segment::Text(self.text.decode(&tokens[position..end])?));
                    position = end;
                }
                Token::Special(Special::ImgAlt) => {
                    let alt_start = position + 1;
                    let alt_end = self.text_run_end(tokens, alt_start)?;
                    if tokens.get(alt_end) != Some(&self.ids.special(Special::ImgSrc)) {
                        return Err(malformed(alt_end, "expected '\" src=\"' after the caption"));
                    }
                    let alt = self.text.decode(&tokens[alt_start..alt_end])?;
                    let mut codes = Vec::new();
                    let mut cursor = alt_end + 1;
                    loop {
                        match tokens.get(cursor).map(|&id| self.ids.classify(id)) {
                            Some(Ok(Token::Image(code))) => codes.push(code),
                            Some(Ok(Token::Special(Special::ImgEnd))) => break,
                            Some(Err(err)) => return Err(err),
                            Some(Ok(_)) => {
                                return Err(malformed(cursor, "only image ids may stand in src"));
                            }
                            None => return Err(malformed(cursor, "image not closed with '\">'")),
                        }
                        cursor += 1;
                    }
                    segments.push(Segment::Image { alt, codes });
                    position = cursor + 1;
                }
                Token::Image(_) => return Err(malformed(position, "image id outside an image")),
                Token::Special(special) => {
                    let problem = format!("{} cannot stand in a document", special.text());
                    return Err(malformed(position, &problem));
                }
            }
        }
        Ok(segments)
    }

    /// The end of the run of text ids starting at `start`.
    fn text_run_end(&self, tokens: &[u32], start: usize) -> Result<usize> {
        let mut end = start;
        while end < tokens.len() && matches!(self.ids.classify(tokens[end])?, Token::Text(_)) {
            end += 1;
        }
        Ok(end)
    }

    /// A readable rendering of any token sequence, for logs and `--verbose`: text as text,
    /// specials by name, image ids as `[#code]`.
    pub fn render(&self, tokens: &[u32]) -> String {
        let mut out = String::new();
        let mut text_run: Vec<u32> = Vec::new();
        let flush = |run: &mut Vec<u32>, out: &mut String| {
            if !run.is_empty() {
                out.push_str(&self.text.decode(run).unwrap_or_else(|_| "\u{fffd}".into()));
                run.clear();
            }
        };
        for &id in tokens {
            match self.ids.classify(id) {
                Ok(Token::Text(_)) => text_run.push(id),
                Ok(Token::Image(code)) => {
                    flush(&mut text_run, &mut out);
                    out.push_str(&format!("[#{code}]"));
                }
                Ok(Token::Special(special)) => {
                    flush(&mut text_run, &mut out);
                    out.push_str(&special.text());
                }
                Err(_) => {
                    flush(&mut text_run, &mut out);
                    out.push_str(&format!("<?{id}>"));
                }
            }
        }
        flush(&mut text_run, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::TrainOptions;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn codec() -> &'static Cm3Codec {
        static CODEC: OnceLock<Cm3Codec> = OnceLock::new();
        CODEC.get_or_init(|| {
            let captions = [
                "grinning face",
                "red apple",
                "a cat on a mat",
                "waving hand",
            ];
            let text = TextTokenizer::train(captions, &TrainOptions::default()).unwrap();
            Cm3Codec::new(text, 64)
        })
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            any::<String>().prop_map(Segment::Text),
            (any::<String>(), prop::collection::vec(0u32..64, 0..70))
                .prop_map(|(alt, codes)| Segment::Image { alt, codes }),
        ]
    }

    proptest! {
        // Serializing any document and reading it back gives the document (in canonical form).
        #[test]
        fn decode_inverts_encode(segments in prop::collection::vec(segment(), 0..6)) {
            let segments = canonical(segments);
            let tokens = codec().encode(&segments).unwrap();
            prop_assert_eq!(codec().decode(&tokens).unwrap(), segments);
        }
    }

    // The rendered form is CM3's HTML, and a trailing <eos> is accepted.
    #[test]
    fn renders_as_cm3_html() {
        let codec = codec();
        let segments = vec![Segment::Image {
            alt: "red apple".into(),
            codes: vec![3, 1],
        }];
        let mut tokens = codec.encode(&segments).unwrap();
        assert_eq!(
            codec.render(&tokens),
            "<img alt=\"red apple\" src=\"[#3][#1]\">"
        );
        tokens.push(codec.ids().special(Special::Eos));
        assert_eq!(codec.decode(&tokens).unwrap(), segments);
    }

    // Structure a document cannot have is an error at its position, never a panic.
    #[test]
    fn malformed_sequences_are_errors() {
        let codec = codec();
        let ids = codec.ids();
        let alt = ids.special(Special::ImgAlt);
        let src = ids.special(Special::ImgSrc);
        let image = ids.image(5).unwrap();
        let cases: Vec<(Vec<u32>, usize)> = vec![
            (vec![image], 0),                                     // image id outside an image
            (vec![alt, image], 1),                                // no src after the caption
            (vec![alt, src, image], 3),                           // unclosed image
            (vec![alt, src, 0, ids.special(Special::ImgEnd)], 2), // text inside src
            (vec![0, ids.mask(0).unwrap()], 1),                   // a sentinel
        ];
        for (tokens, at) in cases {
            match codec.decode(&tokens) {
                Err(Error::Malformed { position, .. }) => assert_eq!(position, at, "{tokens:?}"),
                other => panic!("{tokens:?} gave {other:?}"),
            }
        }
        assert!(matches!(
            codec.decode(&[ids.len()]),
            Err(Error::IdOutOfRange { .. })
        ));
    }
}
