#!/usr/bin/env python3
"""Reference outputs of the unlearning paper's Inception Score, exactly as its official evaluation
(`metric.py` of the paper's MAGE fork) computes it, with torchvision's ImageNet Inception-v3 built as
that code builds it and formula weights (the same formula as inception_reference.py) instead of the
IMAGENET1K_V1 download.

Where each step comes from (the official code, read 2026-11-30):
  1. each saved image is read with PIL and converted to RGB (the official images were written
     channel-swapped and swapped back here: the net effect is RGB);
  2. torchvision.transforms.Resize((256, 256)) on the PIL image: PIL bilinear, antialiased;
  3. transforms.ToTensor(): uint8 / 255;
  4. transforms.Normalize with the CIFAR-10 mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994,
     0.2010) (a quirk of the official code);
  5. nn.Upsample(size=(299, 299), mode='bilinear') of the normalised batch (align_corners=False);
  6. torchvision.models.inception_v3 with transform_input=False, eval mode, the logits with the fc
     bias, softmax over the 1000 classes (float32);
  7. 10 contiguous splits of N // 10 images (remainder dropped), exp(mean KL(p(y|x) || p(y))) per
     split, mean and population std over splits.

Writes tests/fixtures/inception/paper_is_v2.safetensors and paper_is_v2.json. Deterministic, CPU
only, no downloads; reads the 80 photographs listed in tests/fixtures/inception/values.json.

Usage: python tools/reference/paper_is_reference.py [--data DIR] [--out DIR]
(run from any folder, with the environment of tools/reference/requirements.txt)
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inception_reference import ROOT, paper_inception_model  # noqa: E402
from official_is import official_is  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def official_preprocess(paths):
    tf = transforms.Compose([
        transforms.Resize((256, 256)),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    return torch.nn.Upsample(size=(299, 299), mode="bilinear")(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "inception"))
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    values = json.load(open(os.path.join(ROOT, "tests", "fixtures", "inception", "values.json")))
    files = values["set_A"] + values["set_B"]
    paths = []
    for f in files:
        p = f if os.path.isabs(f) and os.path.exists(f) else os.path.join(a.data, f.split("data/", 1)[-1])
        if not os.path.exists(p):
            p = os.path.join(a.data, f)
        paths.append(p)
    model, _ = paper_inception_model()
    x = official_preprocess(paths)
    with torch.no_grad():
        logits = model(x)
    preds = np.zeros((len(paths), 1000))
    preds[:, :] = torch.softmax(logits, dim=1).numpy()
    m, s = official_is(preds, 10)
    m64, s64 = official_is(torch.softmax(logits.double(), dim=1).numpy(), 10)
    os.makedirs(a.out, exist_ok=True)
    # The first image's 299-px input: a 64 x 64 window (rows and columns 100..164) and its full sums,
    # to pin the preprocessing without storing the whole tensor.
    save_file({"logits": logits.contiguous(),
               "input0_window": x[0, :, 100:164, 100:164].contiguous(),
               "input0_sums": torch.stack([x[0].sum(), x[0].abs().sum()]).contiguous()},
              os.path.join(a.out, "paper_is_v2.safetensors"))
    json.dump({
        "images": files,
        "is_mean": m, "is_std": s,
        "is_float64_softmax": [m64, s64],
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "procedure": __doc__.split("Writes")[0].strip(),
    }, open(os.path.join(a.out, "paper_is_v2.json"), "w"), indent=1)
    print(f"paper IS {m!r} +- {s!r} (float64 softmax {m64!r} +- {s64!r}), {len(paths)} images")


if __name__ == "__main__":
    main()
