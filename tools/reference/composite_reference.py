#!/usr/bin/env python3
"""Reference of the official VQ-GAN evaluation's compositing mask: PIL's GaussianBlur of an 8-bit
mask (Pillow's three extended box blurs), as the paper's MAGE fork blurs the hole grown by 14 px
with ImageFilter.GaussianBlur(radius=7). Writes tests/fixtures/composite/pil_blur.safetensors:
for each case an input mask `in_<k>` and PIL's output `out_<k>` (uint8), with the radius in
`radius_<k>` (float32). Deterministic, CPU only, no downloads.

Usage: python tools/reference/composite_reference.py [--out DIR]
"""
import argparse
import os

import numpy as np
import torch
from PIL import Image, ImageFilter
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def cases():
    # (size, hole as (top, left, bottom, right) rectangles, radius)
    yield 64, [(16, 16, 48, 48)], 7.0                                  # a centre hole, grown
    yield 64, [(0, 0, 64, 6), (58, 0, 64, 64), (0, 0, 64, 6), (0, 58, 64, 64)], 7.0  # outpainting borders
    yield 32, [(6, 6, 26, 26)], 1.75                                    # the 32 px scale (7 * 32 / 256)
    yield 40, [(3, 10, 30, 21)], 2.6                                    # a non-square hole, fractional radius


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "composite"))
    a = ap.parse_args()
    out = {}
    for k, (size, rects, radius) in enumerate(cases()):
        m = np.zeros((size, size), dtype=np.uint8)
        for t, l, b, r in rects:
            m[t:b, l:r] = 255
        blurred = np.asarray(Image.fromarray(m).filter(ImageFilter.GaussianBlur(radius=radius)))
        out[f"in_{k}"] = torch.from_numpy(m.copy())
        out[f"out_{k}"] = torch.from_numpy(blurred.copy())
        out[f"radius_{k}"] = torch.tensor([radius], dtype=torch.float32)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "pil_blur.safetensors")
    save_file(out, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
