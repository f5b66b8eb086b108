//! Counts over a loaded dataset, including the leak check between splits.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::document::Document;
use crate::split::Split;

/// Counts for one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    /// Documents in the split.
    pub documents: usize,
    /// Distinct entities in the split.
    pub entities: usize,
}

/// What `racm3 data stats` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Documents read.
    pub documents: usize,
    /// Distinct entities.
    pub entities: usize,
    /// Documents per vendor (the `vendor` attribute); empty when no document has one.
    pub vendors: BTreeMap<String, usize>,
    /// Counts per split, by split name.
    pub splits: BTreeMap<Split, SplitCounts>,
    /// Entities found in both train and test: must be zero, or held-out figures lie.
    pub entities_shared_train_test: usize,
    /// Entities found in both train and val.
    pub entities_shared_train_val: usize,
    /// Images read, and the distinct image sizes among them ("64x64").
    pub image_sizes: BTreeMap<String, usize>,
}

impl Stats {
    /// Counts `documents`.
    pub fn of(documents: &[Document]) -> Self {
        let mut vendors = BTreeMap::new();
        let mut entities_by_split: BTreeMap<Split, BTreeSet<&str>> = BTreeMap::new();
        let mut documents_by_split: BTreeMap<Split, usize> = BTreeMap::new();
        let mut image_sizes = BTreeMap::new();
        for doc in documents {
            if let Some(vendor) = doc.source.attributes.get("vendor") {
                *vendors.entry(vendor.clone()).or_insert(0) += 1;
            }
            entities_by_split
                .entry(doc.source.split)
                .or_default()
                .insert(&doc.source.entity);
            *documents_by_split.entry(doc.source.split).or_insert(0) += 1;
            for image in doc.images() {
                let size = format!("{}x{}", image.pixels.width(), image.pixels.height());
                *image_sizes.entry(size).or_insert(0) += 1;
            }
        }
        let entities_of = |split| entities_by_split.get(&split).cloned().unwrap_or_default();
        let shared = |a, b| entities_of(a).intersection(&entities_of(b)).count();
        let all_entities: BTreeSet<&str> = entities_by_split.values().flatten().copied().collect();
        let splits = Split::ALL
            .into_iter()
            .map(|split| {
                let counts = SplitCounts {
                    documents: documents_by_split.get(&split).copied().unwrap_or(0),
                    entities: entities_of(split).len(),
                };
                (split, counts)
            })
            .collect();
        Stats {
            documents: documents.len(),
            entities: all_entities.len(),
            vendors,
            splits,
            entities_shared_train_test: shared(Split::Train, Split::Test),
            entities_shared_train_val: shared(Split::Train, Split::Val),
            image_sizes,
        }
    }
}

/// The counts as `racm3 data stats` prints them.
impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} documents, {} entities",
            self.documents, self.entities
        )?;
        if !self.vendors.is_empty() {
            let vendors: Vec<String> = self
                .vendors
                .iter()
                .map(|(vendor, count)| format!("{vendor} {count}"))
                .collect();
            writeln!(
                f,
                "vendors: {} ({})",
                self.vendors.len(),
                vendors.join(", ")
            )?;
        }
        writeln!(f, "{:<6} {:>10} {:>10}", "split", "documents", "entities")?;
        for (split, counts) in &self.splits {
            let (documents, entities) = (counts.documents, counts.entities);
            writeln!(f, "{:<6} {documents:>10} {entities:>10}", split.name())?;
        }
        writeln!(
            f,
            "entities shared: train/test {}, train/val {}",
            self.entities_shared_train_test, self.entities_shared_train_val
        )?;
        let sizes: Vec<String> = self
            .image_sizes
            .iter()
            .map(|(size, count)| format!("{size} {count}"))
            .collect();
        write!(f, "images: {}", sizes.join(", "))
    }
}
