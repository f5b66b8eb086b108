#!/usr/bin/env python3
"""Converts a taming-transformers VQGAN checkpoint (.ckpt) into a folder racm3 loads:
model.safetensors with taming's own parameter names, and config.json.

    pip install torch safetensors pyyaml
    python3 tools/taming_ckpt_to_safetensors.py last.ckpt model.yaml OUT_DIR

The YAML is the run's config (configs/*.yaml in taming-transformers, or the project's
configs/*-project.yaml): its model.params.ddconfig and n_embed/embed_dim become racm3's
config. The training loss (discriminator, LPIPS: keys under `loss.`) is dropped; every
other tensor is kept unchanged, so a name racm3 does not know fails loudly at load time.

    racm3 vq reconstruct my-images/ --model OUT_DIR --split val --out grid.png
"""
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

DDCONFIG_KEYS = ["resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels"]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    ckpt, config_yaml, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    params = yaml.safe_load(config_yaml.read_text())["model"]["params"]
    ddconfig = params["ddconfig"]
    if ddconfig.get("double_z", False):
        sys.exit("double_z configs are KL autoencoders, not VQGANs")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    tensors = {k: v.float().contiguous() for k, v in state.items() if not k.startswith("loss.")}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / "model.safetensors")
    config = {k: ddconfig[k] for k in DDCONFIG_KEYS}
    config.update(embed_dim=params["embed_dim"], n_embed=params["n_embed"], norm_groups=32, codebook="euclidean")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {len(tensors)} tensors and config.json to {out}")


if __name__ == "__main__":
    main()
