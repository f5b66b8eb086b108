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

/// Reads a results list alone: image ids and captions, in order; an image may appear once.
pub fn read_results(results: &Path) -> Result<(Vec<String>, Vec<String>), Error> {
    let list: Vec<Caption> = read(
        results,
        "a COCO results list ([{\"image_id\", \"caption\"}])",
    )?;
    let mut ids: Vec<String> = Vec::with_capacity(list.len());
    let mut captions = Vec::with_capacity(list.len());
    for (index, result) in list.into_iter().enumerate() {
        let id = id_text(&result.image_id);
        if ids.contains(&id) {
            return Err(Error::Format {
                path: results.to_owned(),
                problem: format!("image {id} has more than one result (entry {index})"),
            });
        }
        ids.push(id);
        captions.push(result.caption);
    }
    Ok((ids, captions))
}

/// Reads an annotations file and a results file and pairs them: every result's image must
/// have references, and appear once (as COCOEvalCap requires).
pub fn read_pairs(annotations: &Path, results: &Path) -> Result<Paired, Error> {
    let references: Annotations = read(
        annotations,
        "a COCO annotations file ({\"annotations\": [{\"image_id\", \"caption\"}]})",
    )?;
    let (ids, candidates) = read_results(results)?;
    let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for caption in references.annotations {
        by_image
            .entry(id_text(&caption.image_id))
            .or_default()
            .push(caption.caption);
    }
    if ids.is_empty() {
        return Err(Error::Format {
            path: results.to_owned(),
            problem: "holds no results".into(),
        });
    }
    let mut paired = Paired {
        image_ids: Vec::with_capacity(ids.len()),
        candidates,
        references: Vec::with_capacity(ids.len()),
    };
    for (index, id) in ids.into_iter().enumerate() {
        let Some(refs) = by_image.get(&id) else {
            return Err(Error::Format {
                path: results.to_owned(),
                problem: format!(
                    "result {index} is for image {id}, which has no references in {}",
                    annotations.display()
                ),
            });
        };
        paired.references.push(refs.clone());
        paired.image_ids.push(id);
    }
    Ok(paired)
}
