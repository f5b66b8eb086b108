"""Hugging Face transformers' CLIPModel (CPU) on a racm3 CLIP folder, for the side-by-side
benchmark. The folder's config.json and model.safetensors are in transformers' own names,
so both sides run the same model and weights. Prints one JSON object with the fields of
`cargo run --release -p racm3-retrieve --example clip_bench`:

- text and image embeddings/s at batch 1 and 64: token ids (16 a caption) and pixel
  tensors in, normalized features out, under torch.inference_mode();
- training pairs/s at batch 64: the folder's config with a 512-token vocabulary (as the
  racm3 side trains) from scratch, both towers, CLIP's symmetric contrastive loss,
  backward, clip_grad_norm_(1.0), AdamW (betas 0.9/0.98, eps 1e-6, decay 0.2).

    python tools/clip_torch.py [clip folder] [train_steps]

Run by benches/clip_vs_transformers.py; needs torch and transformers. Not used in CI.
"""

import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import CLIPModel

TOKENS, BATCH, RUNS = 16, 64, 5


def features(output):
    """The projected features: transformers 5 returns them as the output's pooler_output,
    earlier versions as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def best_rate(items, work):
    work()
    repeats = 20 if items == 1 else 1
    best = 0.0
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(repeats):
            work()
        best = max(best, items * repeats / (time.perf_counter() - started))
    return best


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "checkpoints/clip-emoji-small"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(folder).eval()
    config = model.config
    vocab, side = config.text_config.vocab_size, config.vision_config.image_size
    ids = torch.randint(0, vocab - 2, (BATCH, TOKENS))
    ids[:, 0], ids[:, -1] = config.text_config.bos_token_id, config.text_config.eos_token_id
    pixels = torch.randn(BATCH, 3, side, side)
    figures = {}
    with torch.inference_mode():
        for batch in (1, BATCH):
            text, image = ids[:batch], pixels[:batch]
            figures[f"text_batch{batch}_per_s"] = best_rate(
                batch, lambda: F.normalize(features(model.get_text_features(input_ids=text)), dim=-1).tolist())
            figures[f"image_batch{batch}_per_s"] = best_rate(
                batch, lambda: F.normalize(features(model.get_image_features(pixel_values=image)), dim=-1).tolist())

    config.text_config.vocab_size = 512
    trained = CLIPModel(config).train()
    ids = torch.randint(0, 510, (BATCH, TOKENS))
    ids[:, 0], ids[:, -1] = config.text_config.bos_token_id % 512, 511
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                                  weight_decay=0.2)
    labels = torch.arange(BATCH)

    def step():
        out = trained(input_ids=ids, pixel_values=pixels)
        logits = out.logits_per_image
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            trained.logit_scale.clamp_(0, 4.6052)
        return loss.item()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps - 1):
        step()
    figures["train_pairs_per_s"] = (steps - 1) * BATCH / (time.perf_counter() - started)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                      "transformers": transformers.__version__, "tokens": TOKENS,
                      "train_batch": BATCH, "train_steps": steps,
                      **{k: round(v, 1) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
