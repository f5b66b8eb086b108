#!/usr/bin/env python3
"""Builds the small data fixtures under tests/fixtures/data from the real packages.

Run once, by hand, after `racm3 data fetch emoji` and `racm3 data fetch fashion-mnist`:

    pip install pillow
    python3 tools/make_data_fixtures.py ~/.cache/racm3 /usr/share/datasets/fashion-mnist

It writes:
- emoji/: three entries of each vendor's emoji.json (one with skin tones) and their PNGs;
  the same entities from the SVG packages (OpenMoji files, Fluent and Noto v1 icon sets,
  a few tones left out so unmatched variations are exercised), then their drawn
  renditions, made by racm3 itself (`racm3 data fetch emoji` with RACM3_HOME on a copy);
- fashion-mnist/: the first 20 training and 10 test images and labels, as gzipped IDX;
- pairs/: an img2dataset-style folder (PNG, JPEG, a shard subfolder, a .json, a README);
- bad-pairs/: a truncated PNG, a file that is not a JPEG, a non-UTF-8 caption, an image
  without caption;
- shards/: a WebDataset tar of good pairs, and stray.tar with a stray member and an orphan.
"""
import gzip
import io
import json
import shutil
import struct
import sys
import tarfile
from pathlib import Path

from PIL import Image

ENTITIES = ["1F600", "1F44B", "1F34E"]  # grinning face, waving hand (skin tones), red apple
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data"


def emoji(home: Path):
    for vendor in ["twitter", "google"]:
        name = f"emoji-datasource-{vendor}-16.0.0"
        src = home / "emoji" / name
        dst = OUT / "emoji" / name
        entries = [e for e in json.loads((src / "emoji.json").read_text()) if e["unified"] in ENTITIES]
        (dst / "img" / vendor / "64").mkdir(parents=True, exist_ok=True)
        (dst / "emoji.json").write_text(json.dumps(entries, indent=1))
        images = [e["image"] for e in entries]
        images += [v["image"] for e in entries for v in (e.get("skin_variations") or {}).values()]
        for image in images:
            shutil.copy(src / "img" / vendor / "64" / image, dst / "img" / vendor / "64" / image)


def svg_packages(home: Path):
    root = home / "emoji"
    om_src, om_dst = root / "openmoji-17.0.0", OUT / "emoji" / "openmoji-17.0.0"
    (om_dst / "color" / "svg").mkdir(parents=True, exist_ok=True)
    shutil.copy(om_src / "LICENSE.txt", om_dst / "LICENSE.txt")
    for sequence in ["1F34E", "1F600", "1F44B", "1F44B-1F3FB", "1F44B-1F3FC", "1F44B-1F3FD"]:
        shutil.copy(om_src / "color" / "svg" / f"{sequence}.svg", om_dst / "color" / "svg")
    fluent = "iconify-json-fluent-emoji-flat-1.2.6"
    chars = json.loads((root / fluent / "chars.json").read_text())
    keys = ["1f34e", "1f600", "1f44b", "1f44b-1f3fb", "1f44b-1f3fc", "1f44b-1f3fd", "1f44b-1f3fe"]
    icon_subset(root, fluent, [chars[k] for k in keys], keys)
    noto = "iconify-json-noto-v1-1.2.5"
    icons = json.loads((root / noto / "icons.json").read_text())
    names = [n for n in [*icons["icons"], *icons.get("aliases", {})]
             if n.startswith("waving-hand") or n in ("red-apple", "grinning-face")]
    icon_subset(root, noto, names, [])


def icon_subset(root: Path, package: str, names, chars_keys):
    src, dst = root / package, OUT / "emoji" / package
    dst.mkdir(parents=True, exist_ok=True)
    icons = json.loads((src / "icons.json").read_text())
    out = {k: icons[k] for k in ("prefix", "width", "height", "lastModified") if k in icons}
    out["icons"], out["aliases"] = {}, {}
    for name in names:
        if name in icons["icons"]:
            out["icons"][name] = icons["icons"][name]
        else:
            alias = icons["aliases"][name]
            out["aliases"][name] = alias
            out["icons"][alias["parent"]] = icons["icons"][alias["parent"]]
    (dst / "icons.json").write_text(json.dumps(out, indent=1))
    if (src / "chars.json").exists():
        chars = json.loads((src / "chars.json").read_text())
        (dst / "chars.json").write_text(json.dumps({k: v for k, v in chars.items() if k in chars_keys}, indent=1))
    shutil.copy(src / "info.json", dst / "info.json")


def idx(path: Path, data: bytes, dims):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    path.write_bytes(gzip.compress(header + data, mtime=0))


def fashion(src: Path):
    dst = OUT / "fashion-mnist"
    dst.mkdir(parents=True, exist_ok=True)
    for prefix, count in [("train", 20), ("t10k", 10)]:
        images = gzip.decompress((src / f"{prefix}-images-idx3-ubyte.gz").read_bytes())
        labels = gzip.decompress((src / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
        idx(dst / f"{prefix}-images-idx3-ubyte.gz", images[16 : 16 + count * 784], [count, 28, 28])
        idx(dst / f"{prefix}-labels-idx1-ubyte.gz", labels[8 : 8 + count], [count])


def image_bytes(source: Path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    picture = Image.open(source).convert("RGBA" if fmt == "PNG" else "RGB")
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def pairs(home: Path):
    twemoji = home / "emoji" / "emoji-datasource-twitter-16.0.0" / "img" / "twitter" / "64"
    good = OUT / "pairs"
    (good / "00001").mkdir(parents=True, exist_ok=True)
    (good / "00000.png").write_bytes(image_bytes(twemoji / "1f600.png", "PNG"))
    (good / "00000.txt").write_text("grinning face\n")
    (good / "00000.json").write_text('{"url": "local"}')
    (good / "00001.jpg").write_bytes(image_bytes(twemoji / "1f34e.png", "JPEG"))
    (good / "00001.txt").write_text("red apple")
    (good / "00001" / "00002.png").write_bytes(image_bytes(twemoji / "1f44b.png", "PNG"))
    (good / "00001" / "00002.txt").write_text("waving hand")
    (good / "README.md").write_text("Files beside the pairs are ignored in a folder.\n")

    bad = OUT / "bad-pairs"
    bad.mkdir(parents=True, exist_ok=True)
    png = image_bytes(twemoji / "1f600.png", "PNG")
    (bad / "good.png").write_bytes(png)
    (bad / "good.txt").write_text("grinning face")
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    (bad / "truncated.txt").write_text("half a face")
    (bad / "notajpeg.jpg").write_bytes(b"this is text, not a JPEG")
    (bad / "notajpeg.txt").write_text("nothing")
    (bad / "latin1.png").write_bytes(png)
    (bad / "latin1.txt").write_bytes("caf\u00e9".encode("latin-1"))
    (bad / "nocaption.png").write_bytes(png)

    shards = OUT / "shards"
    shards.mkdir(parents=True, exist_ok=True)

    def add(tar: tarfile.TarFile, name: str, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(shards / "00000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, image, caption in [("000000000", "1f600.png", "grinning face"), ("000000001", "1f34e.png", "red apple")]:
            add(tar, f"{key}.png", image_bytes(twemoji / image, "PNG"))
            add(tar, f"{key}.txt", caption.encode())
            add(tar, f"{key}.json", b"{}")
    with tarfile.open(OUT / "stray.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, "000000000.png", png)
        add(tar, "000000000.txt", b"grinning face")
        add(tar, "000000001.exe", b"MZ")
        add(tar, "000000002.png", png)


def main():
    home, fashion_dir = Path(sys.argv[1]), Path(sys.argv[2])
    emoji(home)
    svg_packages(home)
    fashion(fashion_dir)
    pairs(home)


if __name__ == "__main__":
    main()
