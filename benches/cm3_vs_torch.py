"""The CM3 decoder against the same architecture in PyTorch (CPU), in one run.

Usage (torch in the Python that runs this; never needed by CI):
    python3 benches/cm3_vs_torch.py [--preset small --steps 10 --rounds 2]

It runs `cargo run --release -p racm3-generate --example cm3_bench` and
`tools/cm3_torch.py` alternately, `--rounds` times each, with the same thread count
(RAYON_NUM_THREADS, default all cores), keeps each side's best figures, and prints them
with the ratios racm3 / PyTorch: training target tokens/s (batch 8, sequence length 256,
a whole AdamW step) and KV-cache decoding tokens/s at batch 1 and 8.
"""

import argparse
import os
import sys

from side_by_side import ROOT, build_example, compare

FIELDS = ["train_tokens_per_s", "decode_batch1_tokens_per_s", "decode_batch8_tokens_per_s"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ours_cmd = [build_example("racm3-generate", "cm3_bench"), args.preset, str(args.steps)]
    torch_cmd = [sys.executable, os.path.join(ROOT, "tools/cm3_torch.py"), args.preset, str(args.steps)]
    compare(ours_cmd, torch_cmd, FIELDS, args.rounds, f"preset {args.preset}")


if __name__ == "__main__":
    main()
