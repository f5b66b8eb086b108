//! COCO's caption formats: an annotations file (`{"images": [...], "annotations":
//! [{"image_id", "caption"}, ...]}`) and a results list (`[{"image_id", "caption"}, ...]`).
//! Image ids may be numbers or strings, as long as both files agree.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

#[derive(Deserialize)]
struct Annotations {
    annotations: Vec<Caption>,
}

#[derive(Deserialize)]
struct Caption {
    image_id: Value,
    caption: String,
}

/// Candidates paired with their references, in the results file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// The image ids, as the files spell them.
    pub image_ids: Vec<String>,
    /// One candidate per image.
    pub candidates: Vec<String>,
    /// The references of each image.
    pub references: Vec<Vec<String>>,
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path, expected: &str) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|err| Error::Format {
        path: path.to_owned(),
        problem: format!("not {expected}: {err}"),
    })
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Reads an annotations file and a results file and pairs them: every result's image must
/// have references, and appear once (as COCOEvalCap requires).
pub fn read_pairs(annotations: &Path, results: &Path) -> Result<Paired, Error> {
    let references: Annotations = read(
        annotations,
        "a COCO annotations file ({\"annotations\": [{\"image_id\", \"caption\"}]})",
    )?;
    let results_file = results;
    let results: Vec<Caption> = read(
        results_file,
        "a COCO results list ([{\"image_id\", \"caption\"}])",
    )?;
    let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for caption in references.annotations {
        by_image
            .entry(id_text(&caption.image_id))
            .or_default()
            .push(caption.caption);
    }
    if results.is_empty() {
        return Err(Error::Format {
            path: results_file.to_owned(),
            problem: "holds no results".into(),
        });
    }
    let mut paired = Paired {
        image_ids: Vec::with_capacity(results.len()),
        candidates: Vec::with_capacity(results.len()),
        references: Vec::with_capacity(results.len()),
    };
    for (index, result) in results.into_iter().enumerate() {
        let id = id_text(&result.image_id);
        let Some(refs) = by_image.get(&id) else {
            return Err(Error::Format {
                path: results_file.to_owned(),
                problem: format!(
                    "result {index} is for image {id}, which has no references in {}",
                    annotations.display()
                ),
            });
        };
        if paired.image_ids.contains(&id) {
            return Err(Error::Format {
                path: results_file.to_owned(),
                problem: format!("image {id} has more than one result (entry {index})"),
            });
        }
        paired.image_ids.push(id);
        paired.candidates.push(result.caption);
        paired.references.push(refs.clone());
    }
    Ok(paired)
}
