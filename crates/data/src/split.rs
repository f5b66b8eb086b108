//! Deterministic train/val/test splits, decided by hashing a key (usually the entity).

use serde::{Deserialize, Serialize};

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data, for model selection.
    Val,
    /// Held out for the final figures.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Assigns `key` to a split: 80% train, 10% val, 10% test. The hash (FNV-1a, 64 bit) is
    /// fixed here rather than taken from std, whose hasher may change between releases:
    /// a document must stay in its split forever.
    pub fn of_key(key: &str) -> Split {
        match fnv1a(key.as_bytes()) % 100 {
            0..80 => Split::Train,
            80..90 => Split::Val,
            _ => Split::Test,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| format!("unknown split '{s}': expected train, val or test"))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // FNV-1a's published test vectors pin the hash, and with it every split assignment.
    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    // Over many keys the shares come out near 80/10/10.
    #[test]
    fn shares_are_near_80_10_10() {
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            counts[Split::of_key(&format!("entity-{i}")) as usize] += 1;
        }
        assert!((7700..8300).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
    }
}
