#!/usr/bin/env python3
"""Builds the taming-transformers parity fixture for racm3's VQGAN.

taming's VQModel at a small config, with seeded random weights, run on a few real emoji:
its weights (taming's own parameter names), the inputs, the pre-quantization latents,
the code indices and the decodings. racm3's test loads the weights unchanged and must give
identical indices and decodings within 1e-4.

Needs torch and the PyPI package taming-transformers==0.0.1 (installed with --no-deps:
only its model modules are imported, which need torch and numpy alone). Run once:

    pip install --no-deps taming-transformers==0.0.1
    python3 tools/make_taming_fixture.py

VQModel itself imports pytorch-lightning and taming's training script; `taming_vq.TamingVQ`
has exactly its sub-modules, so its state dict has VQModel's keys, less the training loss.
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from taming_vq import TamingVQ

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "vqgan" / "taming-tiny"
IMAGES = ROOT / "tests" / "fixtures" / "data" / "emoji" / "emoji-datasource-twitter-16.0.0" / "img" / "twitter" / "64"
DDCONFIG = dict(
    double_z=False,
    z_channels=8,
    resolution=32,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 2],
    num_res_blocks=1,
    attn_resolutions=[16],
    dropout=0.0,
)
N_EMBED, EMBED_DIM = 16, 8


def main():
    torch.manual_seed(0)
    model = TamingVQ(DDCONFIG, N_EMBED, EMBED_DIM).eval()
    with torch.no_grad():
        # Non-trivial norm affines, so that loading them wrong shows.
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    names = ["1f600.png", "1f34e.png", "1f44b.png", "1f44b-1f3ff.png"]
    pixels = [np.asarray(Image.open(IMAGES / n).convert("RGB").resize((32, 32), Image.BICUBIC)) for n in names]
    x = torch.tensor(np.stack(pixels), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
    with torch.no_grad():
        z = model.quant_conv(model.encoder(x))
        # Codes drawn from the latents themselves, so the indices spread over the codebook.
        flat = z.permute(0, 2, 3, 1).reshape(-1, EMBED_DIM)
        picks = torch.randperm(flat.shape[0])[:N_EMBED]
        model.quantize.embedding.weight.copy_(flat[picks] + 0.05 * torch.randn(N_EMBED, EMBED_DIM))
        z_q, _, (_, _, indices) = model.quantize(z)
        decoded = model.decoder(model.post_quant_conv(z_q))
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / "model.safetensors")
    grid = DDCONFIG["resolution"] // 2 ** (len(DDCONFIG["ch_mult"]) - 1)
    save_file(
        {
            "input": x.contiguous(),
            "latents": z.contiguous(),
            "indices": indices.reshape(len(names), grid, grid).to(torch.int64).contiguous(),
            "decoded": decoded.contiguous(),
        },
        OUT / "expected.safetensors",
    )
    config = {k: DDCONFIG[k] for k in ["resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels"]}
    config.update(embed_dim=EMBED_DIM, n_embed=N_EMBED, norm_groups=32, codebook="euclidean")
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print("distinct codes:", len(set(indices.flatten().tolist())), "of", N_EMBED)


if __name__ == "__main__":
    main()
