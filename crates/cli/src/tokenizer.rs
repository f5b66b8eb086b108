//! `racm3 tokenizer`: train the text BPE on a dataset's captions, or try one on text.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use racm3::data::Split;
use racm3::tokenize::{TextTokenizer, TrainOptions};
use serde_json::json;

use crate::data::DatasetArgs;
use crate::progress::Bar;

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE on the captions of a dataset's train split and save it as a
    /// Hugging Face tokenizer.json. Decoding is exact for any text.
    ///
    /// Example: racm3 tokenizer train emoji --vocab-size 4096 --out tokenizer.json
    Train {
        #[command(flatten)]
        input: DatasetArgs,
        /// Vocabulary size, including the 256 byte symbols.
        #[arg(long, default_value_t = TrainOptions::default().vocab_size)]
        vocab_size: usize,
        /// A pair must occur this often to become a merge.
        #[arg(long, default_value_t = TrainOptions::default().min_frequency)]
        min_frequency: u64,
        /// Where to write tokenizer.json.
        #[arg(long, default_value = "tokenizer.json")]
        out: PathBuf,
        /// Print a summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Encode text with a tokenizer.json (one trained here, or any Hugging Face one such as
    /// CLIP's) and print the ids and pieces.
    ///
    /// Example: racm3 tokenizer encode --tokenizer tokenizer.json "red apple"
    Encode {
        /// The tokenizer.json to use.
        #[arg(long, default_value = "tokenizer.json")]
        tokenizer: PathBuf,
        /// The text to encode.
        text: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: TokenizerCommand) -> Result<()> {
    match command {
        TokenizerCommand::Train {
            input,
            vocab_size,
            min_frequency,
            out,
            json,
        } => {
            let loaded = input.load()?;
            let texts = loaded.captions(Split::Train);
            let options = TrainOptions {
                vocab_size,
                min_frequency,
                ..TrainOptions::default()
            };
            let bar = Bar::spinner(&format!("training BPE on {} captions", texts.len()));
            let trained = TextTokenizer::train(&texts, &options);
            drop(bar);
            let tokenizer = trained?;
            tokenizer.save(&out)?;
            let tokens: usize = texts
                .iter()
                .map(|text| tokenizer.encode(text).map(|ids| ids.len()))
                .sum::<Result<usize, _>>()?;
            let mean = tokens as f64 / texts.len().max(1) as f64;
            if json {
                let summary = json!({
                    "out": out, "vocab_size": tokenizer.vocab_size(),
                    "captions": texts.len(), "mean_tokens_per_caption": mean,
                });
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "trained on {} train captions of {}: vocabulary {}, {mean:.2} tokens per caption",
                    texts.len(),
                    input.dataset,
                    tokenizer.vocab_size()
                );
                println!("saved {}", out.display());
            }
            Ok(())
        }
        TokenizerCommand::Encode {
            tokenizer,
            text,
            json,
        } => {
            let loaded = TextTokenizer::from_file(&tokenizer)
                .with_context(|| format!("loading {}", tokenizer.display()))?;
            let ids = loaded.encode(&text)?;
            let pieces = ids
                .iter()
                .map(|&id| loaded.decode(&[id]))
                .collect::<Result<Vec<_>, _>>()?;
            if json {
                println!("{}", json!({"ids": ids, "pieces": pieces}));
            } else {
                println!("{} tokens", ids.len());
                for (id, piece) in ids.iter().zip(&pieces) {
                    println!("{id:>6}  {piece:?}");
                }
            }
            Ok(())
        }
    }
}
