"""What a caption query can find in the experiment's memory: the share of the 189 held-out
val captions whose entity is the top 1, among the top 2 and the top 10 documents of the
memory (every rendition of the train entities, every non-Twemoji one of the held-out), for
each way of scoring the caption against the documents, with and without the near-copy skip
(documents scoring above the threshold left out). Reads what `dump_embeddings` writes;
needs numpy.

    cargo run --release -p racm3 --example dump_embeddings -- checkpoints/clip-emoji-small /tmp/emb
    python3 tools/text_keys.py /tmp/emb

The redundancy skip between retrieved documents is left out here, so the joint rows differ
a little from `racm3 eval --tasks retrieval`.
"""
import sys

import numpy as np

from embedding_dump import load

ROOT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/emb"


def recall(scores, entities, wanted, ks=(1, 2, 10)):
    order = np.argsort(-scores, axis=1)
    return [np.mean([(entities[order[i, :k]] == wanted[i]).any() for i in range(len(wanted))]) for k in ks]


def skipped(scores, by, threshold):
    out = scores.copy()
    out[by > threshold] = -np.inf
    return out


def main():
    memory, val = load(ROOT, "memory"), load(ROOT, "val")
    joint = memory["text"] + memory["image"]
    joint /= np.linalg.norm(joint, axis=1, keepdims=True)
    query = val["text"]
    by_joint = query @ joint.T
    by_text = query @ memory["text"].T
    same = memory["entity"][None, :] == val["entity"][:, None]
    identical = (np.isclose(by_text, 1.0, atol=1e-4) & same).sum(axis=1)
    print(f"documents of the caption's entity with its very caption, per caption: {identical.mean():.2f}")
    rows = [
        ("joint keys (RA-CM3's)", by_joint, None, None),
        ("joint keys, skip above 0.9", by_joint, by_joint, 0.9),
        ("caption against caption", by_text, None, None),
        ("caption against caption, skip above 0.9", by_text, by_text, 0.9),
        ("caption against caption, skip where the joint score is above 0.9", by_text, by_joint, 0.9),
    ]
    print("| caption query scored against | top 1 | among 2 | among 10 |")
    print("| --- | --- | --- | --- |")
    for name, scores, by, threshold in rows:
        if by is not None:
            scores = skipped(scores, by, threshold)
        r = recall(scores, memory["entity"], val["entity"])
        print(f"| {name} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |")


if __name__ == "__main__":
    main()
