//! How much does another rendition's code grid say about an entity's Twemoji codes? Count
//! models fitted on the train entities' pairs (a Twemoji drawing and each other rendition
//! of the same emoji, encoded by one VQGAN), scored on the held-out val entities: the
//! cross-entropy of the Twemoji codes, in nats per code, without and with the other
//! rendition's code at the same place, alone and beside the codes to the left and above.
//! The copy probe asks the generator for 0.5 nats per code from a same-entity document;
//! this bounds what aligned codes give a model that reads them one place at a time.
//! BENCHMARKS.md, "What another rendition's codes say".
//!
//! cargo run --release -p racm3 --example aligned_codes -- VQGAN

use std::collections::HashMap;
use std::path::Path;

use racm3::data::{Document, Split};
use racm3::progress::Quiet;
use racm3::tokenize::vqgan::ImageTokenizer;

/// Counts of the next code after a context.
#[derive(Default)]
struct Counts {
    next: HashMap<u32, f64>,
    total: f64,
}

impl Counts {
    fn add(&mut self, code: u32) {
        *self.next.entry(code).or_default() += 1.0;
        self.total += 1.0;
    }

    /// Witten-Bell: the counts' estimate, interpolated with `backoff` by how many kinds
    /// of codes the context has been seen with.
    fn probability(&self, code: u32, backoff: f64) -> f64 {
        if self.total == 0.0 {
            return backoff;
        }
        let seen = self.total / (self.total + self.next.len() as f64);
        seen * self.next.get(&code).copied().unwrap_or(0.0) / self.total + (1.0 - seen) * backoff
    }
}

/// The count models, filled from the train pairs.
#[derive(Default)]
struct Models {
    unigram: Counts,
    positional: Vec<Counts>,
    aligned: HashMap<u32, Counts>,
    neighbours: HashMap<(u32, u32), Counts>,
    neighbours_and_aligned: HashMap<(u32, u32, u32), Counts>,
}

/// The probability of `code` after the context `key`, `backoff` for a context never seen.
fn estimate<K: std::hash::Hash + Eq>(
    models: &HashMap<K, Counts>,
    key: &K,
    code: u32,
    backoff: f64,
) -> f64 {
    models
        .get(key)
        .map_or(backoff, |counts| counts.probability(code, backoff))
}

/// A Twemoji drawing's codes and another rendition's of the same emoji.
struct Pair<'a> {
    vendor: String,
    target: &'a [u32],
    source: &'a [u32],
    /// Of a train entity: the models count it.
    train: bool,
    /// Of a held-out val entity, one drawing each (no skin tones): the models are scored on it.
    held_out: bool,
}

/// The code to the left of place `i` and the one above (`u32::MAX` at an edge).
fn neighbours(codes: &[u32], i: usize, side: usize) -> (u32, u32) {
    let left = if i.is_multiple_of(side) {
        u32::MAX
    } else {
        codes[i - 1]
    };
    let above = if i >= side { codes[i - side] } else { u32::MAX };
    (left, above)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vqgan = std::env::args()
        .nth(1)
        .ok_or("usage: aligned_codes VQGAN")?;
    let tokenizer = ImageTokenizer::load(Path::new(&vqgan), &racm3::Device::Cpu)?;
    let codebook = f64::from(tokenizer.codebook_size());
    let side = (tokenizer.tokens_per_image() as f64).sqrt() as usize;
    let documents = racm3::datasets::load("emoji", false, &Quiet)?.documents;
    let unified = |d: &Document| d.id().rsplit('/').next().unwrap_or_default().to_owned();
    let vendor = |d: &Document| {
        d.source
            .attributes
            .get("vendor")
            .cloned()
            .unwrap_or_default()
    };
    let wanted: Vec<&Document> = documents
        .iter()
        .filter(|d| d.source.split != Split::Test)
        .collect();
    let images: Vec<_> = wanted
        .iter()
        .map(|d| {
            d.images()
                .next()
                .map(|i| i.pixels.clone())
                .ok_or("no image")
        })
        .collect::<Result<_, _>>()?;
    eprintln!("encoding {} drawings", images.len());
    let codes = tokenizer.encode(&images, 64)?;
    let twemoji: HashMap<String, usize> = wanted
        .iter()
        .enumerate()
        .filter(|(_, d)| vendor(d) == "twitter")
        .map(|(index, d)| (unified(d), index))
        .collect();
    let pairs: Vec<Pair> = wanted
        .iter()
        .enumerate()
        .filter(|(_, d)| vendor(d) != "twitter")
        .filter_map(|(index, d)| {
            let target = *twemoji.get(&unified(d))?;
            let twemoji = &wanted[target].source;
            Some(Pair {
                vendor: vendor(d),
                target: &codes[target],
                source: &codes[index],
                train: twemoji.split == Split::Train,
                held_out: twemoji.split == Split::Val
                    && !twemoji.attributes.contains_key("skin_tone"),
            })
        })
        .collect();

    let mut models = Models {
        positional: (0..side * side).map(|_| Counts::default()).collect(),
        ..Models::default()
    };
    let mut counted = std::collections::HashSet::new();
    for Pair { target, source, .. } in pairs.iter().filter(|p| p.train) {
        // Each Twemoji grid counts once in the models that do not read a source.
        let first = counted.insert(target.as_ptr());
        for (i, (&code, &aligned)) in target.iter().zip(source.iter()).enumerate() {
            let (left, above) = neighbours(target, i, side);
            if first {
                models.unigram.add(code);
                models.positional[i].add(code);
                models
                    .neighbours
                    .entry((left, above))
                    .or_default()
                    .add(code);
            }
            models.aligned.entry(aligned).or_default().add(code);
            models
                .neighbours_and_aligned
                .entry((left, above, aligned))
                .or_default()
                .add(code);
        }
    }
    let mut by_vendor: HashMap<String, [f64; 5]> = HashMap::new();
    for pair in pairs.iter().filter(|p| p.held_out) {
        let (target, source) = (pair.target, pair.source);
        let row = by_vendor.entry(pair.vendor.clone()).or_default();
        for (i, (&code, &aligned)) in target.iter().zip(source.iter()).enumerate() {
            let (left, above) = neighbours(target, i, side);
            let unigram = models.unigram.probability(code, 1.0 / codebook);
            let positional = 0.5 * models.positional[i].probability(code, unigram) + 0.5 * unigram;
            let with_aligned = estimate(&models.aligned, &aligned, code, positional);
            let context = estimate(&models.neighbours, &(left, above), code, positional);
            let aligned_after_context = estimate(&models.aligned, &aligned, code, context);
            let with_both = estimate(
                &models.neighbours_and_aligned,
                &(left, above, aligned),
                code,
                aligned_after_context,
            );
            row[0] -= positional.ln();
            row[1] -= with_aligned.ln();
            row[2] -= context.ln();
            row[3] -= with_both.ln();
            row[4] += 1.0;
        }
    }
    println!(
        "| other rendition | codes | position only | + aligned code | gain | left and above | + aligned code | gain | same code |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut vendors: Vec<_> = by_vendor.keys().cloned().collect();
    vendors.sort();
    let mut all = [0.0; 5];
    let print = |name: &str, row: &[f64; 5], same: f64| {
        let n = row[4];
        println!(
            "| {name} | {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {same:.3} |",
            row[0] / n,
            row[1] / n,
            (row[0] - row[1]) / n,
            row[2] / n,
            row[3] / n,
            (row[2] - row[3]) / n,
        );
    };
    let same_share = |vendor: Option<&str>| {
        let (mut same, mut n) = (0usize, 0usize);
        for pair in pairs.iter().filter(|p| p.held_out) {
            if vendor.is_none_or(|wanted| wanted == pair.vendor) {
                same += pair
                    .target
                    .iter()
                    .zip(pair.source)
                    .filter(|(a, b)| a == b)
                    .count();
                n += pair.target.len();
            }
        }
        same as f64 / n.max(1) as f64
    };
    for vendor in &vendors {
        let row = by_vendor[vendor];
        for (total, value) in all.iter_mut().zip(row) {
            *total += value;
        }
        print(vendor, &row, same_share(Some(vendor)));
    }
    print("all", &all, same_share(None));
    Ok(())
}
