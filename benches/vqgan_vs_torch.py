"""The emoji64-f8 VQGAN against taming-transformers' own modules in PyTorch (CPU), in one run.

Usage (torch and taming-transformers in the Python that runs this; never needed by CI):
    python3 benches/vqgan_vs_torch.py [--batch 8 --steps 4 --rounds 2]

It runs `cargo run --release -p racm3-tokenize --example vqgan_bench` and
`tools/vqgan_torch.py` alternately, `--rounds` times each, with the same thread count
(RAYON_NUM_THREADS, default all cores), keeps each side's best figures, and prints them
with the ratios racm3 / PyTorch: training images/s (a whole AdamW step on L1 plus the VQ
losses, no discriminator) and encoding and decoding images/s at batch 64.
"""

import argparse
import os
import sys

from side_by_side import ROOT, build_example, compare

FIELDS = ["train_images_per_s", "encode_images_per_s", "decode_images_per_s"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ours_cmd = [build_example("racm3-tokenize", "vqgan_bench"), str(args.batch), str(args.steps)]
    torch_cmd = [sys.executable, os.path.join(ROOT, "tools/vqgan_torch.py"), str(args.batch), str(args.steps)]
    compare(ours_cmd, torch_cmd, FIELDS, args.rounds, f"emoji64-f8, batch {args.batch}")


if __name__ == "__main__":
    main()
