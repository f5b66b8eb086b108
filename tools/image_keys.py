"""What an image query can find in the experiment's memory: the share of the held-out
Twemoji drawings (val) whose entity is the top 1, among the top 2 and the top 10 documents
of the memory (every rendition of the train entities, every non-Twemoji one of the
held-out), by plain top-k with no skips, for each way of scoring a drawing against the
documents. Reads what `dump_embeddings` writes; needs numpy.

    cargo run --release -p racm3 --example dump_embeddings -- checkpoints/clip-emoji-small /tmp/emb
    python3 tools/image_keys.py /tmp/emb

The linear maps (within-entity projections, LDA) are fitted on the train entities'
renditions only; the held-out entities are never fitted on. The last rows fit LDA on the
renditions as they are and also zoomed about their centre, which is what
`racm3 clip fit-pixel-keys` does (with its own resampling, so its figures differ a little).
"""
import sys

import numpy as np

from embedding_dump import load

ROOT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/emb"


memory, held_out = load(ROOT, "memory"), load(ROOT, "val")
train = memory["split"] == "Train"


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def row(name, queries, keys):
    order = np.argsort(-(queries @ keys.T), axis=1)
    found = [memory["entity"][o] == e for o, e in zip(order, held_out["entity"])]
    shares = [np.mean([f[:k].any() for f in found]) for k in (1, 2, 10)]
    print(f"| {name} | " + " | ".join(f"{s:.3f}" for s in shares) + " |")


def thumbnails(pixels, side):
    step = 64 // side
    return pixels.reshape(len(pixels), side, step, side, step, 3).mean((2, 4)).reshape(len(pixels), -1) / 255.0


def within_entity_scatter(x, entities):
    _, index = np.unique(entities, return_inverse=True)
    means = np.zeros((index.max() + 1, x.shape[1]))
    np.add.at(means, index, x)
    counts = np.bincount(index)
    means /= counts[:, None]
    within = x - means[index]
    return within.T @ within / len(x), means, counts


def lda(x, entities, regularization, dims):
    """Whitens the within-entity scatter (regularized), then keeps the `dims` directions
    that separate entity means most."""
    center = x.mean(0)
    scatter, means, counts = within_entity_scatter(x, entities)
    scatter += regularization * np.trace(scatter) / len(scatter) * np.eye(len(scatter))
    values, vectors = np.linalg.eigh(scatter)
    whiten = vectors @ np.diag(values ** -0.5) @ vectors.T
    between = (means - center) * np.sqrt(counts)[:, None]
    _, directions = np.linalg.eigh(whiten @ (between.T @ between) @ whiten)
    return center, whiten @ directions[:, ::-1][:, :dims]


mi, mt, qi = memory["image"], memory["text"], held_out["image"]
print("| image query scored against | top 1 | among 2 | among 10 |")
print("| --- | --- | --- | --- |")
row("joint keys (RA-CM3's mean of text and image)", qi, unit(mi + mt))
row("image embeddings (joint+image keys' image half)", qi, mi)
means = {v: mi[train & (memory["vendor"] == v)].mean(0) for v in set(memory["vendor"])}
centred = unit(mi - np.stack([means[v] for v in memory["vendor"]]))
row("image embeddings, each vendor's mean taken out", unit(qi - means["twitter"]), centred)
scatter, _, _ = within_entity_scatter(mi[train], memory["entity"][train])
_, vectors = np.linalg.eigh(scatter)
for k in (4, 32):
    keep = np.eye(len(scatter)) - vectors[:, -k:] @ vectors[:, -k:].T
    row(f"image embeddings, the top {k} within-entity directions projected out", unit(qi @ keep), unit(mi @ keep))
for side in (4, 8, 16):
    row(f"{side}x{side} RGB thumbnails, centred", unit(thumbnails(held_out["pixels"], side) - thumbnails(held_out["pixels"], side).mean(1, keepdims=True)), unit(thumbnails(memory["pixels"], side) - thumbnails(memory["pixels"], side).mean(1, keepdims=True)))
for side in (8, 16):
    x, q = thumbnails(memory["pixels"], side), thumbnails(held_out["pixels"], side)
    center, project = lda(x[train], memory["entity"][train], 1.0, 64)
    row(f"{side}x{side} RGB thumbnails through LDA (64 dims, fitted on train entities)", unit((q - center) @ project), unit((x - center) @ project))


def zoom(pixels, scale):
    """Nearest-neighbour zoom about the centre; shrunk images framed in white."""
    n = pixels.shape[1]
    middle = (n - 1) / 2
    source = np.clip(np.round((np.arange(n) - middle) / scale + middle).astype(int), 0, n - 1)
    out = pixels[:, source][:, :, source].copy()
    if scale < 1:
        outside = np.abs(np.arange(n) - middle) / scale > middle + 0.5
        out[:, outside] = 255
        out[:, :, outside] = 255
    return out


x, q = thumbnails(memory["pixels"], 16), thumbnails(held_out["pixels"], 16)
for scales in ((0.85, 1.15), (0.8, 0.9, 1.1, 1.2)):
    fitted = np.vstack([thumbnails(memory["pixels"][train], 16)] + [thumbnails(zoom(memory["pixels"][train], s), 16) for s in scales])
    labels = np.concatenate([memory["entity"][train]] * (1 + len(scales)))
    center, project = lda(fitted, labels, 1.0, 64)
    row(f"16x16 thumbnails through LDA, fitted also zoomed by {', '.join(map(str, scales))}", unit((q - center) @ project), unit((x - center) @ project))
