"""Reads what `cargo run --release -p racm3 --example dump_embeddings` writes: per set
(memory, val, test) each document's entity, vendor and split, its CLIP image and text
embeddings and its 64x64 pixels. Shared by tools/image_keys.py and tools/text_keys.py."""
import numpy as np


def load(root, name):
    rows = [line.rstrip("\n").split("\t") for line in open(f"{root}/{name}.tsv")]
    n = len(rows)
    image = np.fromfile(f"{root}/{name}-image.f32", dtype=np.float32).reshape(n, -1)
    text = np.fromfile(f"{root}/{name}-text.f32", dtype=np.float32).reshape(n, -1)
    pixels = np.fromfile(f"{root}/{name}-pixels.u8", dtype=np.uint8).reshape(n, 64, 64, 3)
    entity, vendor, split = (np.array(column) for column in zip(*rows))
    return dict(entity=entity, vendor=vendor, split=split, image=image, text=text, pixels=pixels)
