#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes: the memory's files, WebDataset
# tar shards, images, CM3 token sequences and the HTTP API's bodies (fuzz/fuzz_targets).
# libFuzzer through libfuzzer-sys, built with a nightly toolchain and sanitizer-coverage
# flags as cargo-fuzz sets them (`cargo fuzz run <target>` works too where cargo-fuzz is
# installed). Each target runs a fixed time on its committed corpus (fuzz/corpus/<target>,
# seeded from fuzz/seeds); new inputs are merged back minimized. A crash leaves its input
# in fuzz/artifacts/<target>/: make it a regression test, fix it, run again.
#
#   tools/fuzz.sh [seconds per target (default 60)] [target ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(memory_files webdataset_tar image_decode cm3_tokens api_bodies)
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps build scripts and proc macros uninstrumented.
cargo +nightly build --release --target "$host" --bins
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target" "new/$target"
  echo "== $target: $seconds s"
  "target/$host/release/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" -timeout=20 -rss_limit_mb=4096 -max_len=8192 \
    "new/$target" "corpus/$target" "seeds/$target" 2>&1 | tee "logs/$target.log" |
    grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+== ERROR|SUMMARY)" || true
  # Keep only inputs that add coverage, so the committed corpus stays small.
  "target/$host/release/$target" -merge=1 "corpus/$target" "new/$target" >/dev/null 2>&1
  rm -rf "new/$target"
  echo "   corpus: $(ls "corpus/$target" | wc -l) inputs; crashes: $(ls "artifacts/$target" | wc -l)"
done
