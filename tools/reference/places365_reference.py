#!/usr/bin/env python3
"""Reference outputs of the Places365 ResNet-50 scene classifier as the paper's official Palette
evaluation (`eval365.py` + `models/metric.py::inception_score_place365`) runs it, with torchvision's
`resnet50(num_classes=365)` and formula weights instead of CSAIL's `resnet50_places365.pth.tar`.

Steps of the official code (read 2026-12-07 on the `i2i` branch of the Palette fork):
  1. each image is read with PIL and converted to RGB (BaseDataset);
  2. transforms.Resize((256, 256)): PIL bilinear, antialiased;
  3. transforms.CenterCrop(224);
  4. transforms.ToTensor() and Normalize(ImageNet mean, std);
  5. torchvision.models.resnet50(num_classes=365), state dict from checkpoint['state_dict'] with
     'module.' stripped, eval mode; softmax of the logits (with the bias);
  6. 10 contiguous splits of N // 10 (remainder dropped), exp(mean KL) per split, mean and
     population std (the file list is shuffled unseeded first; not reproduced: order as given).

Formula weights: every tensor from (name, index) with the same hash as inception_reference.py
(fnv1a64 of the name + splitmix64 of the index), values below; src/metrics/places365.rs computes
the same (`formula_state_dict`). Not a trained network: the outputs check the maths only.

Writes tests/fixtures/places365/case.safetensors and values.json; with --container FILE also the
whole formula state dict as the official container ({'state_dict': {'module.…': …}}, torch's legacy
serialisation), to check the loader on a file shaped like the real one (97 MB: not committed).

Usage: python tools/reference/places365_reference.py [--data DIR] [--out DIR] [--container FILE]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from formula_hash import MASK64, fnv1a64, splitmix64  # noqa: E402
from official_is import official_is  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Eight MiniPlaces validation photographs (128 px JPEGs), eight different classes.
IMAGES = ["00000001.jpg", "00000002.jpg", "00000003.jpg", "00000004.jpg",
          "00000005.jpg", "00000006.jpg", "00000007.jpg", "00000008.jpg"]




FC_SCALE = 0.1
CONV_GAIN = 1.5


def formula_values(name, shape, v):
    """float64 values of one tensor (README table of tests/fixtures/places365)."""
    last = name.rsplit(".", 1)[-1]
    is_bn = ".bn" in name or name.startswith("bn1") or ".downsample.1." in name
    if name == "fc.weight":
        return FC_SCALE * v
    if name == "fc.bias":
        return 0.1 * v
    if len(shape) == 4:
        # He-uniform scaled by CONV_GAIN with a small negative mean, as in inception_reference.py:
        # it keeps the pooled features input-dependent through 53 convolutions
        fan_in = shape[1] * shape[2] * shape[3]
        return CONV_GAIN * math.sqrt(6.0 / fan_in) * v - 2.0 / fan_in
    assert is_bn, name
    if last == "weight":
        return 1.0 + 0.1 * v
    if last in ("bias", "running_mean"):
        return 0.05 * v
    if last == "running_var":
        return 1.0 + 0.5 * (v + 1.0)
    raise RuntimeError(f"no formula for {name}")


def formula_state_dict(model):
    sd = {}
    for name, like in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            sd[name] = like
            continue
        n = like.numel()
        x = np.uint64(fnv1a64(name.encode())) + np.arange(n, dtype=np.uint64)
        u = (splitmix64(x) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        v = 2.0 * u - 1.0
        val = formula_values(name, tuple(like.shape), v)
        sd[name] = torch.from_numpy(np.asarray(val, dtype=np.float64).astype(np.float32).reshape(like.shape))
    return sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--container", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=365)
    sd = formula_state_dict(model)
    model.load_state_dict(sd)
    model.eval()
    tf = transforms.Compose([
        transforms.Resize((256, 256)),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    paths = [os.path.join(a.data, "miniplaces", "data", "images", "val", f) for f in IMAGES]
    pil = [Image.open(p).convert("RGB") for p in paths]
    images = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()) for im in pil])
    x = torch.stack([tf(im) for im in pil])
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(model.children())[:-1])
        features = torch.flatten(trunk(x), 1)
        logits = model.fc(features)
        probs = torch.nn.functional.softmax(logits, dim=-1)
    mean, std = official_is(probs.double().numpy(), 2)
    out = os.path.join(a.out, "places365")
    os.makedirs(out, exist_ok=True)
    save_file({
        "images": images.contiguous(),          # uint8 [8, 128, 128, 3], PIL's decoding
        "prepared0": x[0].contiguous(),         # float32 [3, 224, 224], image 0 preprocessed
        "features": features.contiguous(),      # float32 [8, 2048]
        "logits": logits.contiguous(),          # float32 [8, 365]
    }, os.path.join(out, "case.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "values.json"), "w") as f:
        json.dump({"images": IMAGES, "is_splits": 2, "is_mean": mean, "is_std": std,
                   "torch": torch.__version__, "torchvision": torchvision.__version__}, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(out, "case.safetensors"), os.path.join(out, "values.json"))
    print("IS (2 splits):", mean, std, "logit std:", float(logits.std()), "feature mean:", float(features.mean()))
    if a.container:
        container = {"epoch": 0, "arch": "resnet50",
                     "state_dict": {"module." + k: v for k, v in sd.items()}}
        torch.save(container, a.container, _use_new_zipfile_serialization=False)
        print("wrote", a.container)


if __name__ == "__main__":
    main()
