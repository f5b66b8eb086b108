//! CI's short run of the `memory_files` fuzz target (tools/fuzz.sh runs it for minutes,
//! coverage-guided): every memory file reader on arbitrary bytes and on valid files with
//! bytes flipped, cut or appended answers with an error or a value, never a panic.

use proptest::prelude::*;
use racm3_memory::parse_any_file;

/// The fuzz target's committed seeds: one valid input per file kind.
fn seeds() -> Vec<Vec<u8>> {
    let dir = racm3_testing::repo_root().join("fuzz/seeds/memory_files");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn the_seeds_parse() {
    let seeds = seeds();
    assert_eq!(seeds.len(), 5);
    for seed in seeds {
        parse_any_file(&seed).unwrap_or_else(|err| panic!("kind {}: {err}", seed[0]));
    }
}

// Every input the fuzzer ever crashed on (fuzz/regressions/memory_files) is an error now.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = racm3_testing::repo_root().join("fuzz/regressions/memory_files");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        assert!(parse_any_file(&data).is_err(), "{}", path.display());
        count += 1;
    }
    assert!(count >= 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_any_file(&data);
    }

    #[test]
    fn damaged_files_never_panic(
        seed in 0usize..5,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        cut_it in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut data = seeds()[seed].clone();
        for (at, value) in flips {
            let at = 1 + at.index(data.len() - 1);
            data[at] = value;
        }
        if cut_it {
            data.truncate(1 + cut.index(data.len()));
        }
        data.extend(tail);
        let _ = parse_any_file(&data);
    }
}
