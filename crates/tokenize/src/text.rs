//! Text BPE through the `tokenizers` crate: train a byte-level BPE on captions, or load any
//! Hugging Face `tokenizer.json` (CLIP's, GPT-2's).
//!
//! A tokenizer trained here is lossless: byte-level pre-tokenization with no normalizer and
//! no prefix space, so `decode(encode(s)) == s` for every string. A loaded tokenizer is
//! as lossless as its own normalizer allows (CLIP's lower-cases and folds white space).

use std::path::Path;

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{Tokenizer, TokenizerBuilder};

use crate::error::{Error, Result};

/// A text tokenizer: a `tokenizers::Tokenizer` with racm3's conventions (no special tokens
/// added on encode; racm3's own structure tokens live in [`crate::IdSpace`]).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// Settings for [`TextTokenizer::train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Target vocabulary size, including the 256 byte symbols.
    pub vocab_size: usize,
    /// A pair must occur this often to be merged.
    pub min_frequency: u64,
    /// Lower-case text before tokenizing, as CLIP's tokenizer does. Decoding is then
    /// exact only for lower-case text.
    pub lowercase: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        // Emoji captions hold about 2,000 distinct words; 4,096 covers them with room for
        // a user's folder, and keeps the embedding table small for the tiny models here.
        Self {
            vocab_size: 4096,
            min_frequency: 2,
            lowercase: false,
        }
    }
}

fn tokenizer_error(err: impl std::fmt::Display) -> Error {
    Error::Tokenizer(err.to_string())
}

impl TextTokenizer {
    /// Trains a byte-level BPE on `texts`.
    pub fn train<I, S>(texts: I, options: &TrainOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let texts: Vec<String> = texts
            .into_iter()
            .map(|text| text.as_ref().to_owned())
            .filter(|text| !text.is_empty())
            .collect();
        if texts.is_empty() {
            return Err(Error::NoTrainingText);
        }
        // add_prefix_space = false keeps decoding exact; the regex splits words as GPT-2's.
        let byte_level = ByteLevel::new(false, false, true);
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(options.vocab_size)
            .min_frequency(options.min_frequency)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tokenizer =
            TokenizerBuilder::new()
                .with_model(BPE::default())
                .with_normalizer(options.lowercase.then(|| {
                    tokenizers::NormalizerWrapper::from(tokenizers::normalizers::Lowercase)
                }))
                .with_pre_tokenizer(Some(byte_level))
                .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
                .with_decoder(Some(byte_level))
                .build()
                .map_err(tokenizer_error)?;
        tokenizer
            .train(&mut trainer, texts.into_iter())
            .map_err(tokenizer_error)?;
        Ok(Self {
            inner: Tokenizer::from(tokenizer),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|err| Error::TokenizerFile {
            path: path.to_owned(),
            message: match err {
                Error::Tokenizer(message) => message,
                other => other.to_string(),
            },
        })
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes).map_err(tokenizer_error)?;
        Ok(Self { inner })
    }

    /// Saves as `tokenizer.json`, atomically: a temp file beside it, then a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(tokenizer_error)?;
        racm3_data::write_atomic(path, json.as_bytes()).map_err(Error::Data)
    }

    /// Adds special tokens (kept whole, never split) at the end of the vocabulary, and
    /// returns their ids; tokens already present keep their ids.
    pub fn add_special_tokens(&mut self, tokens: &[&str]) -> Result<Vec<u32>> {
        let added: Vec<tokenizers::AddedToken> = tokens
            .iter()
            .map(|token| tokenizers::AddedToken::from(*token, true))
            .collect();
        self.inner
            .add_special_tokens(added)
            .map_err(tokenizer_error)?;
        tokens
            .iter()
            .map(|token| {
                self.inner
                    .token_to_id(token)
                    .ok_or_else(|| tokenizer_error(format!("{token} was not added")))
            })
            .collect()
    }

    /// The id of a token spelled exactly so (a special token such as `<|endoftext|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size, added tokens included: text ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> u32 {
        self.inner.get_vocab_size(true) as u32
    }

    /// Token ids of `text`, with no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`. Ids outside the vocabulary are an error, not a panic.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id >= vocab) {
            return Err(Error::IdOutOfRange { id, len: vocab });
        }
        let text = self.inner.decode(ids, false).map_err(tokenizer_error)?;
        // CLIP's BPE marks word ends with "</w>" and its tokenizer.json decoder leaves the
        // marks in; transformers turns them into spaces in Python, and so do we.
        Ok(match self.end_of_word_suffix() {
            Some(suffix) => text.replace(suffix, " ").trim().to_owned(),
            None => text,
        })
    }

    fn end_of_word_suffix(&self) -> Option<&str> {
        match self.inner.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) => bpe.end_of_word_suffix.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captions() -> Vec<&'static str> {
        vec![
            "grinning face",
            "grinning face with big eyes",
            "red apple",
            "green apple",
            "waving hand: medium skin tone",
            "face with tears of joy",
        ]
    }

    // A trained tokenizer decodes every string to itself, including ones unseen in training.
    #[test]
    fn trained_tokenizer_is_lossless() {
        let tokenizer = TextTokenizer::train(captions(), &TrainOptions::default()).unwrap();
        for text in [
            "red apple",
            "  Ünïcödé 🍎 with  spaces\n",
            "",
            "\"quoted\" <img>",
        ] {
            let ids = tokenizer.encode(text).unwrap();
            assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        }
        // Merges were learned: a frequent word is fewer tokens than its bytes.
        assert!(tokenizer.encode("grinning").unwrap().len() < "grinning".len());
    }

    // Saving and loading gives the same ids; the file is a real HF tokenizer.json.
    #[test]
    fn save_and_load_round_trip() {
        let tokenizer = TextTokenizer::train(captions(), &TrainOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tokenizer.save(&path).unwrap();
        let loaded = TextTokenizer::from_file(&path).unwrap();
        assert_eq!(loaded.vocab_size(), tokenizer.vocab_size());
        assert_eq!(
            loaded.encode("grinning apple").unwrap(),
            tokenizer.encode("grinning apple").unwrap()
        );
    }

    // Malformed JSON names the file; an out-of-vocabulary id is an error.
    #[test]
    fn bad_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = TextTokenizer::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.json: not a loadable tokenizer.json"),
            "{err}"
        );
        let tokenizer = TextTokenizer::train(captions(), &TrainOptions::default()).unwrap();
        assert!(tokenizer.decode(&[tokenizer.vocab_size()]).is_err());
        assert!(matches!(
            TextTokenizer::train(Vec::<String>::new(), &TrainOptions::default()),
            Err(Error::NoTrainingText)
        ));
    }
}
