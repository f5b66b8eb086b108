"""Writes fuzz/seeds/<target>/: one valid input of each kind each fuzz target reads, made
from the repo's fixtures and a memory of two documents that `racm3 memory build` makes (the
first argument: its folder). The seeds here were made from two 16x16 one-colour PNGs
captioned "red apple" and "blue whale", built with
`racm3 memory build PAIRS --index hnsw16 --out M` (RACM3_HOME=tests/fixtures/data).
Valid inputs let the fuzzer start past the headers; small ones keep the corpus small."""

import base64
import glob
import json
import os
import struct
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
seeds = os.path.join(root, "fuzz", "seeds")
memory = sys.argv[1]


def write(target, name, data):
    os.makedirs(os.path.join(seeds, target), exist_ok=True)
    with open(os.path.join(seeds, target, name), "wb") as f:
        f.write(data)


def payload(path):
    data = open(path, "rb").read()
    return data[24:-4]  # past the 24-byte header, before the CRC-32


# memory_files: selector byte (container, manifest, documents, keys, graph) + content.
documents = sorted(glob.glob(os.path.join(memory, "documents-*.bin")))[0]
keys = sorted(glob.glob(os.path.join(memory, "keys-*.bin")))[0]
graph = sorted(glob.glob(os.path.join(memory, "graph-*.bin")))[0]
write("memory_files", "container", b"\x00" + open(documents, "rb").read())
write("memory_files", "manifest", b"\x01" + payload(os.path.join(memory, "manifest.bin")))
write("memory_files", "documents", b"\x02" + payload(documents))
write("memory_files", "keys", b"\x03" + payload(keys))
# A standalone HNSW index: dimension and rows, the vectors, then the graph.
key_payload = payload(keys)
dim = struct.unpack("<Q", key_payload[:8])[0]
rows = (len(key_payload) - 8) // (4 * dim)
write("memory_files", "graph", b"\x04" + struct.pack("<QQ", dim, rows) + key_payload[8:] + payload(graph))

data = os.path.join(root, "tests", "fixtures", "data")
write("webdataset_tar", "shard", open(os.path.join(data, "shards", "00000.tar"), "rb").read())
write("webdataset_tar", "stray", open(os.path.join(data, "stray.tar"), "rb").read())

png = open(os.path.join(data, "bad-pairs", "good.png"), "rb").read()
write("image_decode", "png", png)
write("image_decode", "truncated", open(os.path.join(data, "bad-pairs", "truncated.png"), "rb").read())

write("cm3_tokens", "counting", bytes(range(256)))

image = base64.b64encode(png).decode()
bodies = [
    (0, {"text": "red apple", "k": 2}),
    (0, {"image": "data:image/png;base64," + image, "k": 1, "query_threshold": 0.5}),
    (1, {"text": "red apple", "cfg": 3, "temperature": 0.7, "top_p": 0.9, "samples": 2}),
    (2, {"image": image, "k": 2, "top_k": 5}),
    (3, {"text": "apple", "num_images": 3, "deduplicate": True}),
    (4, {"documents": [{"caption": "green tree", "image": image}, {"caption": "a note", "id": "n/1"}]}),
    (5, {}),
]
for i, (which, body) in enumerate(bodies):
    write("api_bodies", f"body{i}", bytes([which]) + json.dumps(body).encode())
