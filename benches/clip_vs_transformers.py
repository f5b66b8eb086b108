"""racm3's CLIP against Hugging Face transformers' CLIPModel (CPU), in one run.

Usage (torch and transformers in the Python that runs this; never needed by CI):
    python3 benches/clip_vs_transformers.py [--folder checkpoints/clip-emoji-small --steps 6 --rounds 2]

It runs `cargo run --release -p racm3-retrieve --example clip_bench` and
`tools/clip_torch.py` alternately on the same CLIP folder (both load its config.json and
model.safetensors), `--rounds` times each, with the same thread count (RAYON_NUM_THREADS,
default all cores), keeps each side's best figures and prints them with the ratios
racm3 / transformers: text and image embeddings/s at batch 1 and 64, and training pairs/s
at batch 64.
"""

import argparse
import sys

from side_by_side import ROOT, build_example, compare

FIELDS = ["text_batch1_per_s", "text_batch64_per_s", "image_batch1_per_s", "image_batch64_per_s",
          "train_pairs_per_s"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default="checkpoints/clip-emoji-small")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ours = [build_example("racm3-retrieve", "clip_bench"), args.folder, str(args.steps)]
    theirs = [sys.executable, f"{ROOT}/tools/clip_torch.py", args.folder, str(args.steps)]
    compare(ours, theirs, FIELDS, args.rounds, f"CLIP {args.folder}")


if __name__ == "__main__":
    main()
