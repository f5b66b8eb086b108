//! Keeping the k best (label, score) pairs of a stream.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::index::Hit;

/// A hit ordered so that the *worst* score is the heap's top: a bounded min-heap.
#[derive(Clone, Copy)]
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is "greater" (worse); ties put the larger label on top, so the
        // smaller label wins a tie, as faiss's exact search does.
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.label.cmp(&other.0.label))
    }
}

/// The k best hits seen so far.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score a new hit must beat once the list is full.
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap
                .peek()
                .map_or(f32::NEG_INFINITY, |worst| worst.0.score)
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, label: u64, score: f32) {
        if self.k == 0 {
            return;
        }
        let hit = Worst(Hit { label, score });
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }

    pub(crate) fn merge(&mut self, other: TopK) {
        for Worst(hit) in other.heap {
            self.push(hit.label, hit.score);
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|w| w.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keeps exactly the k highest scores, best first, with ties broken by the lower label.
    #[test]
    fn keeps_best_k_in_order() {
        let mut top = TopK::new(3);
        for (label, score) in [(0, 0.1), (1, 0.9), (2, 0.5), (3, 0.9), (4, -1.0), (5, 0.7)] {
            top.push(label, score);
        }
        let hits: Vec<(u64, f32)> = top
            .into_sorted()
            .iter()
            .map(|h| (h.label, h.score))
            .collect();
        assert_eq!(hits, vec![(1, 0.9), (3, 0.9), (5, 0.7)]);
    }
}
