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
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIELDS = ["train_tokens_per_s", "decode_batch1_tokens_per_s", "decode_batch8_tokens_per_s"]


def run(command, env):
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("RAYON_NUM_THREADS", str(os.cpu_count()))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "racm3-generate", "--example", "cm3_bench"],
                   cwd=ROOT, check=True)
    ours_cmd = [os.path.join(ROOT, "target/release/examples/cm3_bench"), args.preset, str(args.steps)]
    torch_cmd = [sys.executable, os.path.join(ROOT, "tools/cm3_torch.py"), args.preset, str(args.steps)]
    best = {"racm3": {}, "pytorch": {}}
    for _ in range(args.rounds):
        for name, command in (("racm3", ours_cmd), ("pytorch", torch_cmd)):
            result = run(command, env)
            for field in FIELDS:
                best[name][field] = max(best[name].get(field, 0.0), result[field])
            if name == "pytorch":
                best["torch_version"] = result["torch"]
    print(f"preset {args.preset}, {env['RAYON_NUM_THREADS']} threads, torch {best['torch_version']}")
    print(f"{'figure':32} {'racm3':>10} {'pytorch':>10} {'ratio':>7}")
    for field in FIELDS:
        ours, theirs = best["racm3"][field], best["pytorch"][field]
        print(f"{field:32} {ours:10.1f} {theirs:10.1f} {ours / theirs:7.2f}")
    print(json.dumps(best))


if __name__ == "__main__":
    main()
