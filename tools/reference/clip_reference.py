#!/usr/bin/env python3
"""Reference outputs of transformers' CLIPVisionModelWithProjection (tiny random configs) and of the
CLIP image preprocessing, plus the key/shape manifest of laion/CLIP-ViT-H-14-laion2B-s32B-b79K's vision
tower. Writes tests/fixtures/clip/. Deterministic, CPU only, no downloads.

Usage: python tools/reference/clip_reference.py [--data DIR] [--out DIR]
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import transformers
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

TINY = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, projection_dim=16, layer_norm_eps=1e-5)
CASES = {"tiny": dict(TINY, hidden_act="quick_gelu"), "tiny_gelu": dict(TINY, hidden_act="gelu")}

# Vision tower of laion/CLIP-ViT-H-14-laion2B-s32B-b79K (published config.json, vision_config).
VIT_H_14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                patch_size=14, image_size=224, num_channels=3, projection_dim=1024, hidden_act="gelu",
                layer_norm_eps=1e-5)

# openai/clip-vit-base-patch32 preprocessor_config.json, written out by hand.
PROCESSOR_SETTINGS = dict(
    do_resize=True, size={"shortest_edge": 224}, resample=PILImageResampling.BICUBIC,
    do_center_crop=True, crop_size={"height": 224, "width": 224},
    do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
    image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD), do_convert_rgb=True,
)
PREPROCESS_IMAGES = [
    "miniplaces/data/images/val/00000001.jpg",
    "miniplaces/data/images/val/00000002.jpg",
    "tiny-imagenet-200/val/images/val_2.JPEG",
]


def randomise(model: torch.nn.Module, seed: int = 0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = "layer_norm" in name or "layrnorm" in name or "layernorm" in name
            if is_norm and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif is_norm and name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("class_embedding") or name.endswith("position_embedding.weight"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.endswith(".weight"):
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                raise RuntimeError(f"unhandled parameter {name}")


def run_case(name, cfg_kwargs, out_root):
    out = os.path.join(out_root, "clip", name)
    os.makedirs(out, exist_ok=True)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg_kwargs))
    model.set_attn_implementation("eager")
    randomise(model, seed=0)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    reloaded, info = CLIPVisionModelWithProjection.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k

    g = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        o = model(pixel_values=pixel_values, output_hidden_states=True)
        v = model.vision_model(pixel_values=pixel_values)
    assert torch.allclose(v.last_hidden_state, o.last_hidden_state)
    assert torch.allclose(model.visual_projection(v.pooler_output), o.image_embeds)
    tensors = {
        "pixel_values": pixel_values,
        "image_embeds": o.image_embeds,
        "last_hidden_state": o.last_hidden_state,
        "pooled": v.pooler_output,
    }
    for k, h in enumerate(o.hidden_states):
        tensors[f"hidden_states_{k}"] = h
    tensors = {k: t.detach().clone().contiguous() for k, t in tensors.items()}
    save_file(tensors, os.path.join(out, "case.safetensors"), metadata={"format": "pt"})
    for f in sorted(os.listdir(out)):
        print(f"wrote {os.path.join(out, f)} ({os.path.getsize(os.path.join(out, f))} bytes)")


def run_preprocess(data_dir, out_root):
    from transformers.models.clip.image_processing_clip import CLIPImageProcessor  # torchvision backend
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # PIL backend

    pil_proc = CLIPImageProcessorPil(**PROCESSOR_SETTINGS)
    tv_proc = CLIPImageProcessor(**PROCESSOR_SETTINGS)
    tensors, report = {}, []
    for k, rel in enumerate(PREPROCESS_IMAGES):
        img = Image.open(os.path.join(data_dir, rel))
        a = pil_proc(images=img, return_tensors="pt")["pixel_values"][0]
        b = tv_proc(images=img, return_tensors="pt")["pixel_values"][0]
        assert a.shape == (3, 224, 224) and a.dtype == torch.float32
        # The PIL backend equals this plain recipe (all inputs here are square, so no crop happens):
        m = np.asarray(img.convert("RGB").resize((224, 224), resample=Image.BICUBIC), dtype=np.float32)
        m = (m / 255.0 - np.asarray(OPENAI_CLIP_MEAN, np.float32)) / np.asarray(OPENAI_CLIP_STD, np.float32)
        assert float((a - torch.from_numpy(m).permute(2, 0, 1)).abs().max()) < 1e-5
        tensors[f"pixel_values_{k}"] = a.contiguous()
        d = (a - b).abs()
        report.append((rel, img.mode, img.size, float(d.max()), float(d.mean())))
    total = sum(t.numel() * 4 for t in tensors.values())
    if total >= 2 * 1024 * 1024:
        tensors = {k: v for k, v in tensors.items() if k in ("pixel_values_0", "pixel_values_1")}
    path = os.path.join(out_root, "clip", "preprocess.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {sorted(tensors)})")
    for rel, mode, size, mx, mean in report:
        print(f"  {rel} ({mode} {size[0]}x{size[1]}): |PIL backend - torchvision backend| max {mx:.6f} mean {mean:.6f}")


def write_manifest(out_root):
    config = CLIPVisionConfig(**VIT_H_14)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    tensors = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    full = config.to_dict()
    cfg = {"architectures": ["CLIPVisionModelWithProjection"], "model_type": config.model_type}
    cfg.update({k: full[k] for k in CLIPVisionConfig.__annotations__ if k in full})
    doc = {
        "model": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "class": "CLIPVisionModelWithProjection",
        "config": cfg,
        "tensors": tensors,
        "num_parameters": int(sum(np.prod(s) for _, s in tensors)),
        "source": "vision_config values written by hand from the checkpoint's published config.json; shapes from "
                  f"transformers {transformers.__version__} CLIPVisionModelWithProjection on the meta device. "
                  "The hub checkpoint is a full CLIPModel: it also holds text_model.*, text_projection.weight and "
                  "logit_scale, which a vision-only loader skips.",
    }
    path = os.path.join(out_root, "clip", "clip-vit-h-14-manifest.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name, cfg in CASES.items():
        run_case(name, cfg, args.out)
    run_preprocess(args.data, args.out)
    write_manifest(args.out)


if __name__ == "__main__":
    main()
