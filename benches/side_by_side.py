"""Runs racm3's benchmark binary and its PyTorch counterpart alternately and prints each
side's best figures with the ratios racm3 / PyTorch. Shared by the `*_vs_torch.py`
benchmarks; both commands print one JSON object as their last line."""

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def thread_env():
    """The environment both sides run in: RAYON_NUM_THREADS (default all cores), which
    tools/*_torch.py also read for torch.set_num_threads."""
    env = dict(os.environ)
    env.setdefault("RAYON_NUM_THREADS", str(os.cpu_count()))
    return env


def build_example(package, example):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", package, "--example", example],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/examples", example)


def run(command, env):
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ours_cmd, torch_cmd, fields, rounds, title):
    """Alternates the two commands `rounds` times each, keeps each side's highest value of
    every field (all are throughputs), and prints a table and the JSON of the best."""
    env = thread_env()
    best = {"racm3": {}, "pytorch": {}}
    for _ in range(rounds):
        for name, command in (("racm3", ours_cmd), ("pytorch", torch_cmd)):
            result = run(command, env)
            for field in fields:
                best[name][field] = max(best[name].get(field, 0.0), result[field])
            if name == "pytorch":
                best["torch_version"] = result["torch"]
    print(f"{title}, {env['RAYON_NUM_THREADS']} threads, torch {best['torch_version']}")
    print(f"{'figure':32} {'racm3':>10} {'pytorch':>10} {'ratio':>7}")
    for field in fields:
        ours, theirs = best["racm3"][field], best["pytorch"][field]
        print(f"{field:32} {ours:10.1f} {theirs:10.1f} {ours / theirs:7.2f}")
    print(json.dumps(best))
