//! The one token id space shared by text, images and structure.
//!
//! Layout: `[0, text)` are text BPE ids, `[text, text + codebook)` are image codebook ids,
//! and the special tokens follow. Keeping specials last means a text tokenizer and a
//! codebook of any size slot in without renumbering either.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many `<mask:i>` sentinels exist; CM3 masks at most this many spans.
pub const MASK_COUNT: u32 = 16;

/// A structural token. The three image tokens spell CM3's HTML
/// `<img alt="…" src="…">` so that captions and image tokens have fixed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    /// Padding in a batch.
    Pad,
    /// End of a sequence.
    Eos,
    /// Separates retrieved documents from each other and from the main document.
    Break,
    /// `<img alt="`: opens an image; the caption follows.
    ImgAlt,
    /// `" src="`: the caption ends; image codebook ids follow.
    ImgSrc,
    /// `">`: the image ends.
    ImgEnd,
    /// `<mask:i>`, a CM3 span sentinel, `i < MASK_COUNT`.
    Mask(u32),
}

impl Special {
    const FIXED: [Special; 6] = [
        Special::Pad,
        Special::Eos,
        Special::Break,
        Special::ImgAlt,
        Special::ImgSrc,
        Special::ImgEnd,
    ];

    fn offset(self) -> u32 {
        match self {
            Special::Pad => 0,
            Special::Eos => 1,
            Special::Break => 2,
            Special::ImgAlt => 3,
            Special::ImgSrc => 4,
            Special::ImgEnd => 5,
            Special::Mask(i) => 6 + i,
        }
    }

    /// How the token is written in a rendered sequence.
    pub fn text(self) -> String {
        match self {
            Special::Pad => "<pad>".into(),
            Special::Eos => "<eos>".into(),
            Special::Break => "<break>".into(),
            Special::ImgAlt => "<img alt=\"".into(),
            Special::ImgSrc => "\" src=\"".into(),
            Special::ImgEnd => "\">".into(),
            Special::Mask(i) => format!("<mask:{i}>"),
        }
    }
}

/// What a token id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A text BPE id.
    Text(u32),
    /// An image codebook index.
    Image(u32),
    /// A structural token.
    Special(Special),
}

/// The sizes that fix the id layout. Stored beside every model that reads token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdSpace {
    /// Text BPE vocabulary size.
    pub text_vocab: u32,
    /// Image codebook size.
    pub codebook: u32,
}

impl IdSpace {
    /// The layout for a text vocabulary and a codebook of the given sizes.
    pub fn new(text_vocab: u32, codebook: u32) -> Self {
        Self {
            text_vocab,
            codebook,
        }
    }

    /// Total ids, the model's vocabulary size.
    pub fn len(&self) -> u32 {
        self.specials_start() + Special::FIXED.len() as u32 + MASK_COUNT
    }

    /// Never true: the specials alone make the space non-empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn specials_start(&self) -> u32 {
        self.text_vocab + self.codebook
    }

    /// The id of an image codebook index.
    pub fn image(&self, code: u32) -> Result<u32> {
        if code >= self.codebook {
            return Err(Error::CodeOutOfRange {
                code,
                codebook: self.codebook,
            });
        }
        Ok(self.text_vocab + code)
    }

    /// The id of a special token.
    pub fn special(&self, special: Special) -> u32 {
        self.specials_start() + special.offset()
    }

    /// The id of `<mask:i>`, or an error past the last sentinel.
    pub fn mask(&self, i: u32) -> Result<u32> {
        if i >= MASK_COUNT {
            return Err(Error::TooManyMasks { asked: i + 1 });
        }
        Ok(self.special(Special::Mask(i)))
    }

    /// Ids of all image codebook entries, the vocabulary allowed inside `src="`.
    pub fn image_range(&self) -> std::ops::Range<u32> {
        self.text_vocab..self.specials_start()
    }

    /// What `id` stands for, or an error for an id past the end.
    pub fn classify(&self, id: u32) -> Result<Token> {
        if id < self.text_vocab {
            return Ok(Token::Text(id));
        }
        if id < self.specials_start() {
            return Ok(Token::Image(id - self.text_vocab));
        }
        let offset = id - self.specials_start();
        if let Some(&special) = Special::FIXED.get(offset as usize) {
            return Ok(Token::Special(special));
        }
        let mask = offset - Special::FIXED.len() as u32;
        if mask < MASK_COUNT {
            return Ok(Token::Special(Special::Mask(mask)));
        }
        Err(Error::IdOutOfRange {
            id,
            len: self.len(),
        })
    }

    /// The mask index if `id` is a `<mask:i>`.
    pub fn mask_index(&self, id: u32) -> Option<u32> {
        match self.classify(id) {
            Ok(Token::Special(Special::Mask(i))) => Some(i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every id classifies back to the token that produced it, and the regions do not overlap.
    #[test]
    fn classify_inverts_the_layout() {
        let ids = IdSpace::new(10, 4);
        assert_eq!(ids.len(), 10 + 4 + 6 + 16);
        assert_eq!(ids.classify(9).unwrap(), Token::Text(9));
        assert_eq!(
            ids.classify(ids.image(3).unwrap()).unwrap(),
            Token::Image(3)
        );
        for special in Special::FIXED
            .into_iter()
            .chain((0..MASK_COUNT).map(Special::Mask))
        {
            assert_eq!(
                ids.classify(ids.special(special)).unwrap(),
                Token::Special(special)
            );
        }
        assert!(ids.classify(ids.len()).is_err());
        assert!(ids.image(4).is_err());
        assert!(ids.mask(16).is_err());
    }
}
