#!/usr/bin/env python3
"""Builds CLIP's tokenizer.json from OpenAI's BPE vocabulary, and the ids that Hugging Face
transformers gives for a few texts, as a fixture for loading a real HF tokenizer.json.

No model hub is reachable here, so the tokenizer is rebuilt from the vocabulary file that
ships in the `openai-clip` wheel, the way OpenAI's SimpleTokenizer reads it, and converted
by transformers' CLIPTokenizerFast. Run once, by hand:

    python3 -m venv /tmp/clipfix && /tmp/clipfix/bin/pip install transformers tokenizers \
        openai-clip ftfy regex
    /tmp/clipfix/bin/python tools/make_clip_tokenizer_fixture.py

It writes tests/fixtures/tokenizer/clip-tokenizer.json.gz and clip-expected.json.
"""
import gzip
import json
import tempfile
from pathlib import Path

import importlib.util
from transformers import CLIPTokenizerFast

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizer"
TEXTS = [
    "a photo of a red apple",
    "Grinning Face with Big Eyes!",
    "waving hand: medium-dark skin tone",
    "  extra   spaces\tand tabs ",
    "café 🍎 naïve",
    "",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def main():
    # Located without importing clip, which needs torch.
    clip_dir = Path(importlib.util.find_spec("clip").submodule_search_locations[0])
    vocab_path = clip_dir / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(vocab_path).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    symbols = bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizerFast(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"))
        tokenizer.save_pretrained(tmp)
        OUT.mkdir(parents=True, exist_ok=True)
        data = (Path(tmp) / "tokenizer.json").read_bytes()
        (OUT / "clip-tokenizer.json.gz").write_bytes(gzip.compress(data, mtime=0))
    expected = [
        {
            "text": text,
            "ids": tokenizer(text, add_special_tokens=False)["input_ids"],
            "decoded": tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]),
        }
        for text in TEXTS
    ]
    (OUT / "clip-expected.json").write_text(json.dumps({"vocab_size": len(tokenizer), "cases": expected}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
