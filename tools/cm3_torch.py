"""The racm3 CM3 decoder in PyTorch (CPU), for the side-by-side benchmark.

Same architecture and config as crates/generate (pre-norm RMSNorm, rotary positions in
the GPT-NeoX layout, fused QKV, causal attention, exact-GELU MLP, head tied to the
embedding), written the way a PyTorch user would: scaled_dot_product_attention, AdamW,
clip_grad_norm_. Prints one JSON object with the same fields as
`cargo run --release -p racm3-generate --example cm3_bench`.

    python tools/cm3_torch.py [preset] [train_steps]

Run by benches/cm3_vs_torch.sh; needs torch (CPU is enough). Not used in CI.
"""

import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

PRESETS = {
    "tiny": dict(hidden=64, intermediate=256, layers=2, heads=4, max_seq_len=256),
    "small": dict(hidden=256, intermediate=1024, layers=4, heads=4, max_seq_len=512),
}
# IdSpace::new(4096, 512): text, codebook, then racm3's specials.
SPECIALS = 6 + 16
VOCAB = 4096 + 512 + SPECIALS
SEQ_LEN, BATCH, PROMPT, NEW_TOKENS = 256, 8, 32, 128
# Timed decoding runs at each batch size; the fastest counts (as in cm3_bench.rs).
DECODE_RUNS = 6


class Rotary(nn.Module):
    def __init__(self, head_dim, max_seq_len, theta=10000.0):
        super().__init__()
        half = head_dim // 2
        inverse = 1.0 / theta ** (2.0 * torch.arange(half) / head_dim)
        angles = torch.arange(max_seq_len)[:, None] * inverse[None, :]
        self.register_buffer("cos", torch.cat([angles.cos()] * 2, 1), persistent=False)
        self.register_buffer("sin", torch.cat([angles.sin()] * 2, 1), persistent=False)

    def forward(self, x, offset):
        t, half = x.shape[2], x.shape[3] // 2
        cos, sin = self.cos[offset : offset + t], self.sin[offset : offset + t]
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.head_dim = c["heads"], c["hidden"] // c["heads"]
        self.attention_norm = nn.RMSNorm(c["hidden"], eps=1e-5)
        self.qkv_proj = nn.Linear(c["hidden"], 3 * c["hidden"], bias=False)
        self.o_proj = nn.Linear(c["hidden"], c["hidden"], bias=False)
        self.mlp_norm = nn.RMSNorm(c["hidden"], eps=1e-5)
        self.fc1 = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.fc2 = nn.Linear(c["intermediate"], c["hidden"], bias=False)

    def forward(self, x, rotary, offset, cache):
        b, t, h = x.shape
        qkv = self.qkv_proj(self.attention_norm(x))
        qkv = qkv.view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = rotary(qkv[0], offset), rotary(qkv[1], offset), qkv[2]
        if cache is not None:
            if cache:
                k = torch.cat([cache[0], k], 2)
                v = torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        x = x + self.o_proj(y.transpose(1, 2).reshape(b, t, h))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class Cm3(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, c["hidden"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = nn.RMSNorm(c["hidden"], eps=1e-5)
        self.rotary = Rotary(c["hidden"] // c["heads"], c["max_seq_len"])

    def forward(self, ids, caches=None, offset=0):
        x = self.embed_tokens(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, self.rotary, offset, None if caches is None else caches[i])
        return self.norm(x) @ self.embed_tokens.weight.t()


def main():
    preset = sys.argv[1] if len(sys.argv) > 1 else "small"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    model = Cm3(PRESETS[preset])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    data = torch.randint(0, 4096, (64, SEQ_LEN))

    def train_step(i):
        batch = data[(i * BATCH) % 64 : (i * BATCH) % 64 + BATCH]
        logits = model(batch)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return BATCH * (SEQ_LEN - 1)

    for i in range(2):
        train_step(i)
    started = time.perf_counter()
    tokens = sum(train_step(i) for i in range(steps))
    train_rate = tokens / (time.perf_counter() - started)

    result = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": preset,
        "train_batch": BATCH,
        "seq_len": SEQ_LEN,
        "train_steps": steps,
        "train_tokens_per_s": round(train_rate, 1),
    }
    model.eval()
    with torch.inference_mode():
        for batch in (1, BATCH):
            prompt = torch.randint(0, 4096, (batch, PROMPT))
            rate = 0.0
            for _ in range(DECODE_RUNS):  # the best run: this machine's timings are noisy
                started = time.perf_counter()
                caches = [[] for _ in model.layers]
                logits = model(prompt, caches, 0)[:, -1]
                for step in range(NEW_TOKENS):
                    following = logits.argmax(-1, keepdim=True)
                    logits = model(following, caches, PROMPT + step)[:, -1]
                rate = max(rate, batch * NEW_TOKENS / (time.perf_counter() - started))
            result[f"decode_batch{batch}_tokens_per_s"] = round(rate, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
