"""taming-transformers' VQGAN at racm3's `emoji64-f8` shape, timed on the CPU, for the
side-by-side benchmark `benches/vqgan_vs_torch.py`.

The model is taming's own Encoder, Decoder and VectorQuantizer (PyPI
taming-transformers==0.0.1, installed with --no-deps) with 1x1 quant convs, as VQModel
has them: 32 base channels, ch_mult (1, 2, 4, 4), one ResNet block a level, attention at
8x8, 512 codes of 32 dimensions. taming's GroupNorm always has 32 groups where racm3's
preset has 8; the arithmetic is the same size. A training step is what
`racm3 vq train` does before the discriminator starts: forward, L1 plus the VQ losses
(beta 0.25), backward, AdamW. Prints one JSON object with the same fields as
`cargo run --release -p racm3-tokenize --example vqgan_bench`.

    python tools/vqgan_torch.py [batch] [train_steps]

Needs torch (CPU is enough) and taming-transformers. Not used in CI.
"""

import json
import os
import sys
import time

import torch
from taming_vq import TamingVQ

DDCONFIG = dict(
    double_z=False,
    z_channels=32,
    resolution=64,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_resolutions=[8],
    dropout=0.0,
)
N_EMBED, EMBED_DIM = 512, 32
CODING_BATCH = 64
CODING_RUNS = 3


def encode(model, x):
    z_q, vq_loss, (_, _, indices) = model.quantize(model.quant_conv(model.encoder(x)))
    return z_q, vq_loss, indices


def decode_indices(model, indices, grid):
    z_q = model.quantize.embedding(indices).view(-1, grid, grid, EMBED_DIM).permute(0, 3, 1, 2)
    return model.decoder(model.post_quant_conv(z_q))


def best_seconds(run):
    times = []
    for _ in range(CODING_RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    model = TamingVQ(DDCONFIG, N_EMBED, EMBED_DIM)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.0)
    images = torch.rand(256, 3, 64, 64) * 2 - 1

    def train_step(step):
        x = images[torch.randint(0, images.shape[0], (batch,), generator=torch.Generator().manual_seed(step))]
        z_q, vq_loss, _ = encode(model, x)
        reconstruction = model.decoder(model.post_quant_conv(z_q))
        loss = (x - reconstruction).abs().mean() + vq_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step(0)
    started = time.perf_counter()
    for step in range(steps):
        train_step(step + 1)
    train_images_per_s = steps * batch / (time.perf_counter() - started)

    model.eval()
    grid = DDCONFIG["resolution"] // 2 ** (len(DDCONFIG["ch_mult"]) - 1)
    with torch.no_grad():
        x = images[:CODING_BATCH]
        indices = encode(model, x)[2]
        encode_s = best_seconds(lambda: encode(model, x))
        decode_s = best_seconds(lambda: decode_indices(model, indices, grid))
    print(json.dumps({
        "batch": batch,
        "train_images_per_s": train_images_per_s,
        "encode_images_per_s": CODING_BATCH / encode_s,
        "decode_images_per_s": CODING_BATCH / decode_s,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
