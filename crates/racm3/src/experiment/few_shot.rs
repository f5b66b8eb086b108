//! Few-shot classification in context on Fashion-MNIST, with made-up labels (RA-CM3 §4.4,
//! after Frozen's "fast concept binding"): each episode picks two classes and gives them
//! two nonsense words, shows 1, 2 or 4 labeled training images in the prompt (one class
//! only at 1 shot, both classes evenly at 2 and 4), then asks for a test image's word.
//! The answer is the word with the higher log-likelihood, so chance is 50%.
//!
//! Every setting answers the same episodes: RA-CM3 with retrieval (from a memory of
//! Fashion-MNIST training documents captioned with the real class names), RA-CM3 without,
//! and the baseline. Four shots stop at 4 because the `small` context of 512 tokens holds
//! four 64-code images, the query and two retrieved documents, not more.

use std::path::Path;

use image::RgbImage;
use racm3_data::{Document, Split};
use racm3_memory::Memory;
use racm3_retrieve::ClipEncoder;
use racm3_train::LossLog;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::Error;
use crate::progress::Observer;
use crate::tasks::{Demonstration, Generator, Retriever};

/// Nonsense words that name no class; an episode draws two.
const WORDS: [&str; 10] = [
    "dax", "blicket", "wug", "toma", "fep", "zorp", "kiki", "gazzer", "mib", "tufa",
];

/// Demonstrations per episode that are compared.
pub const SHOTS: [usize; 3] = [1, 2, 4];

/// Training documents in the few-shot retrieval memory.
const MEMORY_DOCUMENTS: usize = 3000;

struct Episode {
    words: [String; 2],
    query: usize,
    answer: usize,
    /// For each of [`SHOTS`], the demonstrations: (training document, word index).
    demonstrations: Vec<Vec<(usize, usize)>>,
}

/// `queries` episodes drawn with `seed` from the training and test documents, over the
/// classes that have both.
fn episodes(
    train: &[&Document],
    test: &[&Document],
    queries: usize,
    seed: u64,
) -> Result<Vec<Episode>, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let by_class = |documents: &[&Document]| {
        let mut classes = vec![Vec::new(); 10];
        for (index, document) in documents.iter().enumerate() {
            if let Some(class) = document
                .source
                .attributes
                .get("label")
                .and_then(|label| label.parse::<usize>().ok())
                .filter(|&class| class < 10)
            {
                classes[class].push(index);
            }
        }
        classes
    };
    let (train_classes, test_classes) = (by_class(train), by_class(test));
    let usable: Vec<usize> = (0..10)
        .filter(|&class| !train_classes[class].is_empty() && !test_classes[class].is_empty())
        .collect();
    if usable.len() < 2 {
        return Err(Error::BadInput(format!(
            "few-shot needs two classes with training and test images; Fashion-MNIST here has {}",
            usable.len()
        )));
    }
    let episodes = (0..queries)
        .map(|query| {
            let mut classes = usable.clone();
            classes.shuffle(&mut rng);
            let mut words = WORDS;
            words.shuffle(&mut rng);
            let pair = [classes[0], classes[1]];
            let answer = query % 2;
            let pool = &test_classes[pair[answer]];
            let query_document = pool[rng.random_range(0..pool.len())];
            let shown_alone = rng.random_range(0..2);
            let demonstrations = SHOTS
                .iter()
                .map(|&shots| {
                    let mut demos: Vec<(usize, usize)> = (0..shots)
                        .map(|n| {
                            let word = if shots == 1 { shown_alone } else { n % 2 };
                            let pool = &train_classes[pair[word]];
                            (pool[rng.random_range(0..pool.len())], word)
                        })
                        .collect();
                    demos.shuffle(&mut rng);
                    demos
                })
                .collect();
            Episode {
                words: [words[0].to_owned(), words[1].to_owned()],
                query: query_document,
                answer,
                demonstrations,
            }
        })
        .collect();
    Ok(episodes)
}

/// A memory of the first training documents, keyed by `clip`, in `dir` (rebuilt).
fn fashion_memory(dir: &Path, train: &[&Document], clip: &ClipEncoder) -> Result<Memory, Error> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|err| Error::BadInput(format!("removing {}: {err}", dir.display())))?;
    }
    let mut memory = Memory::create(dir, clip.key_dim(), "flat", clip.describe())?;
    let documents: Vec<Document> = train
        .iter()
        .take(MEMORY_DOCUMENTS)
        .map(|d| (*d).clone())
        .collect();
    for chunk in documents.chunks(512) {
        memory.add(chunk, &clip.document_keys(chunk)?)?;
    }
    memory.commit()?;
    Ok(memory)
}

/// Accuracy of each setting at each number of shots over `queries` episodes; the curve of
/// accuracy against shots goes to `out/few-shot.csv` and `.png`.
pub fn run(
    ra: &Generator,
    baseline: &Generator,
    clip: &ClipEncoder,
    k: usize,
    queries: usize,
    out: &Path,
    observer: &dyn Observer,
) -> Result<Value, Error> {
    let loaded = crate::datasets::load("fashion-mnist", false, observer)?;
    let train: Vec<&Document> = loaded
        .documents
        .iter()
        .filter(|d| d.source.split == Split::Train)
        .collect();
    let test: Vec<&Document> = loaded
        .documents
        .iter()
        .filter(|d| d.source.split == Split::Test)
        .collect();
    let memory = fashion_memory(&out.join("fashion-memory"), &train, clip)?;
    let retriever = Retriever {
        encoder: clip,
        memory: &memory,
        policy: racm3_retrieve::RetrievalPolicy::top(k),
    };
    let episodes = episodes(&train, &test, queries, 0)?;
    let image = |document: &Document| -> RgbImage {
        document
            .images()
            .next()
            .map_or_else(|| RgbImage::new(28, 28), |i| i.pixels.clone())
    };
    let settings: [(&str, &Generator, Option<&Retriever>); 3] = [
        ("ra-cm3 with retrieval", ra, Some(&retriever)),
        ("ra-cm3 without retrieval", ra, None),
        ("baseline", baseline, None),
    ];
    let names: Vec<&str> = settings.iter().map(|(name, ..)| *name).collect();
    let mut table = vec![vec![0.0; names.len()]; SHOTS.len()];
    let mut results = serde_json::Map::new();
    for (column, (name, generator, retriever)) in settings.into_iter().enumerate() {
        let mut accuracy = serde_json::Map::new();
        for (shot_index, shots) in SHOTS.iter().enumerate() {
            let stage = observer.stage(&format!("few-shot {name}, {shots} shots"));
            stage.set_total(episodes.len() as u64);
            let mut correct = 0usize;
            for episode in &episodes {
                let demonstrations: Vec<Demonstration> = episode.demonstrations[shot_index]
                    .iter()
                    .map(|&(document, word)| Demonstration {
                        image: image(train[document]),
                        label: episode.words[word].clone(),
                    })
                    .collect();
                let answer = generator.classify_in_context(
                    &demonstrations,
                    &image(test[episode.query]),
                    &episode.words,
                    retriever,
                )?;
                correct += usize::from(answer.label == episode.words[episode.answer]);
                stage.advance(1);
            }
            drop(stage);
            let share = correct as f64 / episodes.len() as f64;
            table[shot_index][column] = share;
            // Half-width of a 95% normal interval for a proportion.
            let interval = 1.96 * (share * (1.0 - share) / episodes.len() as f64).sqrt();
            accuracy.insert(
                shots.to_string(),
                json!({"accuracy": share, "ci95": interval, "correct": correct}),
            );
        }
        results.insert(name.to_owned(), Value::Object(accuracy));
    }
    // Accuracy against the number of shots, one panel per setting: few-shot.csv and .png.
    let mut curve = LossLog::open(&out.join("few-shot.csv"), &names, 0)?;
    for (shots, row) in SHOTS.iter().zip(&table) {
        curve.push(*shots, row)?;
    }
    curve.plot(&out.join("few-shot.png"))?;
    Ok(json!({
        "queries": episodes.len(),
        "ways": 2,
        "chance": 0.5,
        "words": WORDS,
        "retrieval_memory_documents": memory.len(),
        "k": k,
        "settings": results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use racm3_data::Source;
    use std::collections::BTreeMap;

    fn document(index: usize, class: usize) -> Document {
        let source = Source {
            dataset: "fashion-mnist".into(),
            entity: format!("{index}"),
            split: Split::Train,
            references: vec![],
            attributes: BTreeMap::from([("label".to_owned(), class.to_string())]),
        };
        Document::image_caption(format!("{index}"), "x", RgbImage::new(2, 2), source)
    }

    // Episodes are balanced between the two words, their demonstrations show only the
    // episode's two classes (both at 2 and 4 shots), and the same seed gives the same
    // episodes.
    #[test]
    fn episodes_are_balanced_and_reproducible() {
        let train: Vec<Document> = (0..200).map(|i| document(i, i % 10)).collect();
        let test: Vec<Document> = (0..50).map(|i| document(i, i % 10)).collect();
        let (train, test): (Vec<&Document>, Vec<&Document>) =
            (train.iter().collect(), test.iter().collect());
        let drawn = episodes(&train, &test, 40, 7).unwrap();
        let class = |d: &Document| d.source.attributes["label"].parse::<usize>().unwrap();
        assert_eq!(drawn.iter().filter(|e| e.answer == 0).count(), 20);
        for episode in &drawn {
            assert_ne!(episode.words[0], episode.words[1]);
            let query_class = class(test[episode.query]);
            for (shots, demos) in SHOTS.iter().zip(&episode.demonstrations) {
                assert_eq!(demos.len(), *shots);
                let words: Vec<usize> = demos.iter().map(|&(_, word)| word).collect();
                if *shots > 1 {
                    assert_eq!(words.iter().filter(|&&w| w == 0).count(), shots / 2);
                }
                for &(document, word) in demos {
                    // The query's word labels the query's class and no other.
                    let same = class(train[document]) == query_class;
                    assert_eq!(same, word == episode.answer);
                }
            }
        }
        let again = episodes(&train, &test, 40, 7).unwrap();
        // A class without test images is never drawn; one usable class is an error.
        let only_two: Vec<&Document> = test.iter().copied().filter(|d| class(d) < 2).collect();
        let pairs = episodes(&train, &only_two, 10, 7).unwrap();
        assert!(pairs.iter().all(|e| class(only_two[e.query]) < 2));
        let one: Vec<&Document> = test.iter().copied().filter(|d| class(d) == 0).collect();
        assert!(episodes(&train, &one, 10, 7).is_err());
        assert!(
            drawn
                .iter()
                .zip(&again)
                .all(|(a, b)| a.query == b.query && a.words == b.words)
        );
    }
}
