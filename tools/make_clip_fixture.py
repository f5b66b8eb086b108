#!/usr/bin/env python3
"""Builds the Hugging Face CLIP parity fixture for racm3's CLIP.

transformers' CLIPModel at a small config with seeded random weights, saved with
save_pretrained (config.json + model.safetensors, HF's own names and defaults), and its
outputs on a few inputs: text features of padded token ids, image features of pixel
values, and the pixel values that CLIPImageProcessor (OpenAI's preprocessing) makes from
committed PNGs. racm3's test loads the folder unchanged and must match within 1e-4.

The config uses eos_token_id = 2, as OpenAI's checkpoints on the hub do, so the pooled
text state is read at the largest id (HF's legacy rule); the vision tower uses the exact
GELU and the text tower quick GELU, so both activations are checked.

Needs torch, transformers and pillow. Run once:
    python3 tools/make_clip_fixture.py
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "clip" / "hf-tiny"


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, hidden_act="gelu"),
        projection_dim=24,
    )
    model = CLIPModel(config).eval()
    # Random init leaves LayerNorms at 1/0 and the logit scale at its default: perturb
    # every parameter so a swapped or ignored tensor shows.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    for stray in ["generation_config.json"]:
        (OUT / stray).unlink(missing_ok=True)

    # Token ids as OpenAI's tokenizer lays them out: start 998, words, end 999 (the
    # largest id), then padding (1) to the batch's length.
    lengths = [5, 9, 3]
    seq_len = 12
    input_ids = np.ones((len(lengths), seq_len), dtype=np.int64)
    for row, length in enumerate(lengths):
        words = rng.integers(3, 998, size=length)
        input_ids[row, : length + 2] = [998, *words, 999]

    # Images: two at the model's size, one larger and not square (resized and cropped).
    images = []
    for index, (width, height) in enumerate([(32, 32), (32, 32), (57, 43)]):
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        # Smooth blocks, so bicubic resampling differences stay small.
        pixels = np.kron(pixels[::4, ::4], np.ones((4, 4, 1), dtype=np.uint8))[:height, :width]
        path = OUT / f"image{index}.png"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        images.append(Image.open(path).convert("RGB"))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]

    with torch.no_grad():
        ids = torch.from_numpy(input_ids)
        text_pooled = model.text_model(input_ids=ids).pooler_output
        text_features = model.text_projection(text_pooled)
        image_pooled = model.vision_model(pixel_values=pixel_values).pooler_output
        image_features = model.visual_projection(image_pooled)
    save_file(
        {
            "input_ids": ids.to(torch.int64).contiguous(),
            "pixel_values": pixel_values.contiguous(),
            "text_features": text_features.contiguous(),
            "image_features": image_features.contiguous(),
            "logit_scale": model.logit_scale.detach().reshape(1).contiguous(),
        },
        OUT / "expected.safetensors",
    )
    print(json.dumps({"config": str(OUT / "config.json"), "lengths": lengths}))


if __name__ == "__main__":
    main()
