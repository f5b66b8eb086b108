"""racm3's memory indexes against faiss-cpu on the same vectors, in one run.

Usage (faiss-cpu and numpy in the Python that runs this; never needed by CI):
    python3 benches/mips_vs_faiss.py --keys 100000 [--queries 1000 --dim 512]

It builds and runs the Rust side (crates/memory/examples/mips_bench.rs), which draws
clustered unit vectors, writes them to a scratch folder and times racm3; then it loads
the same files into faiss IndexFlatIP and IndexHNSWFlat (M=32, same efConstruction),
times them the same way, and prints one table with the ratios racm3 / faiss. The flat
indexes are timed on the first 200 queries (exact search at 1M keys answers a few a
second); recall and HNSW use all of them.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import faiss
import numpy as np

# The flat indexes are timed on this many of the queries (both sides); HNSW on all of them.
FLAT_TIMED_QUERIES = 200


def qps(count, run):
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - started))
    return best


def timed_search(index, queries, batch):
    def run():
        for start in range(0, len(queries), batch):
            index.search(queries[start:start + batch], 10)
    return qps(len(queries), run)


def recall_at_10(found, exact):
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scratch = tempfile.mkdtemp(prefix="mips-bench-")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "racm3-memory", "--example", "mips_bench"],
                   cwd=root, check=True)
    ours = json.loads(subprocess.run(
        [os.path.join(root, "target/release/examples/mips_bench"), scratch,
         str(args.keys), str(args.queries), str(args.dim)],
        check=True, capture_output=True, text=True).stdout)

    keys = np.fromfile(os.path.join(scratch, "keys.f32"), dtype="<f4").reshape(-1, args.dim)
    queries = np.fromfile(os.path.join(scratch, "queries.f32"), dtype="<f4").reshape(-1, args.dim)
    started = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(keys)
    flat_build = time.perf_counter() - started
    _, exact = flat.search(queries, 10)
    # As on the Rust side: exact search is slow at 1M keys, so 200 queries time it.
    flat_queries = queries[:FLAT_TIMED_QUERIES]
    theirs = {"flat": {"build_s": flat_build,
                       "qps_batch_1": timed_search(flat, flat_queries, 1),
                       "qps_batch_64": timed_search(flat, flat_queries, 64)}}
    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ours["hnsw32"]["ef_construction"]
    hnsw.add(keys)
    sweep = []
    hnsw_build = time.perf_counter() - started
    for ef in [8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 256]:
        hnsw.hnsw.efSearch = ef
        _, found = hnsw.search(queries, 10)
        sweep.append({"ef_search": ef, "recall_at_10": recall_at_10(found, exact),
                      "qps_batch_1": timed_search(hnsw, queries, 1),
                      "qps_batch_64": timed_search(hnsw, queries, 64)})
    theirs["hnsw32"] = {"build_s": hnsw_build, "sweep": sweep,
                        "memory_bytes": int(faiss.serialize_index(hnsw).nbytes)}
    theirs["flat"]["memory_bytes"] = int(faiss.serialize_index(flat).nbytes)

    print(f"{args.keys} keys x {args.dim}, {args.queries} queries, "
          f"{ours['threads']} threads, faiss {faiss.__version__}")
    print("| index | build s (racm3 / faiss) | QPS batch 1 (racm3 / faiss = ratio) | QPS batch 64 (ratio) |")
    print("| --- | --- | --- | --- |")
    o, t = ours["flat"], theirs["flat"]
    print(f"| flat | {o['build_s']:.2f} / {t['build_s']:.2f} | {o['qps_batch_1']:.0f} / {t['qps_batch_1']:.0f} = "
          f"{o['qps_batch_1'] / t['qps_batch_1']:.2f}x | {o['qps_batch_64']:.0f} / {t['qps_batch_64']:.0f} = "
          f"{o['qps_batch_64'] / t['qps_batch_64']:.2f}x |")
    mib = 1 << 20
    print(f"flat memory: {o['memory_bytes'] / mib:.0f} MiB (racm3) / {t['memory_bytes'] / mib:.0f} MiB (faiss)")
    print(f"\nHNSW M=32, efConstruction {ours['hnsw32']['ef_construction']}: build "
          f"{ours['hnsw32']['build_s']:.1f} s (racm3) / {hnsw_build:.1f} s (faiss); memory "
          f"{ours['hnsw32']['memory_bytes'] / mib:.0f} MiB (racm3: keys, their 8-bit codes and level-0 links) / "
          f"{theirs['hnsw32']['memory_bytes'] / mib:.0f} MiB (faiss, serialized)")
    print("| efSearch | recall@10 racm3 / faiss | QPS batch 1 racm3 / faiss | QPS batch 64 racm3 / faiss |")
    print("| --- | --- | --- | --- |")
    for a, b in zip(ours["hnsw32"]["sweep"], sweep):
        print(f"| {a['ef_search']} | {a['recall_at_10']:.4f} / {b['recall_at_10']:.4f} | "
              f"{a['qps_batch_1']:.0f} / {b['qps_batch_1']:.0f} | {a['qps_batch_64']:.0f} / {b['qps_batch_64']:.0f} |")
    # Same-recall comparison: each side's fastest setting with recall@10 >= 0.95.
    def best(rows, key):
        ok = [r for r in rows if r["recall_at_10"] >= 0.95]
        return max(ok, key=lambda r: r[key]) if ok else None
    for key in ["qps_batch_1", "qps_batch_64"]:
        a, b = best(ours["hnsw32"]["sweep"], key), best(sweep, key)
        if a and b:
            print(f"at recall@10 >= 0.95, {key}: racm3 {a[key]:.0f} (ef {a['ef_search']}, recall "
                  f"{a['recall_at_10']:.4f}) / faiss {b[key]:.0f} (ef {b['ef_search']}, recall "
                  f"{b['recall_at_10']:.4f}) = {a[key] / b[key]:.2f}x")
    print(json.dumps({"racm3": ours, "faiss": theirs}))


if __name__ == "__main__":
    main()
