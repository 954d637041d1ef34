#!/usr/bin/env python3
"""Reference outputs of transformers' ViTMAEForPreTraining for tiny random configs.

Writes tests/fixtures/mae/{tiny,tiny_normpix}/ (config.json, model.safetensors, case.safetensors)
and the vit-mae-{base,large} key/shape manifests. Deterministic, CPU only, no downloads.

Usage: python tools/reference/mae_reference.py [--data DIR] [--out DIR]
"""
import argparse
import json
import os
import shutil
import re

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import transformers
from transformers import ViTMAEConfig, ViTMAEForPreTraining

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CASES = {
    "tiny": dict(
        image_size=32, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, decoder_hidden_size=24,
        decoder_num_hidden_layers=2, decoder_num_attention_heads=4, decoder_intermediate_size=48,
        layer_norm_eps=1e-12, qkv_bias=True, norm_pix_loss=False, hidden_act="gelu",
    ),
    "tiny_normpix": dict(
        image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=96, decoder_hidden_size=32,
        decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=64,
        layer_norm_eps=1e-12, qkv_bias=True, norm_pix_loss=True, hidden_act="gelu",
    ),
}

# Published configs of the Hugging Face checkpoints (written out by hand; see README).
HUB_CONFIGS = {
    "vit-mae-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
        decoder_intermediate_size=2048, image_size=224, patch_size=16, num_channels=3,
        hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True, mask_ratio=0.75, norm_pix_loss=False,
    ),
    "vit-mae-large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
        decoder_intermediate_size=2048, image_size=224, patch_size=16, num_channels=3,
        hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True, mask_ratio=0.75, norm_pix_loss=False,
    ),
}

# transformers >= 5 renamed the ViT-MAE modules internally (vit.layers.N.attention.q_proj, ...) but
# the checkpoints on the hub (and transformers 4.x) use the names below. We always write the hub
# layout; from_pretrained converts it on load (checked below).
_INTERNAL_TO_HUB = [
    (r"^vit\.layers\.(\d+)\.", r"vit.encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]


def hub_name(internal: str) -> str:
    name = internal
    for pat, rep in _INTERNAL_TO_HUB:
        name = re.sub(pat, rep, name)
    return name


def load_images(data_dir):
    """val_0 and val_1 of tiny-imagenet: RGB, PIL bilinear to 32x32, [0,1], ImageNet-normalised."""
    raw = []
    for name in ("val_0.JPEG", "val_1.JPEG"):
        path = os.path.join(data_dir, "tiny-imagenet-200", "val", "images", name)
        img = Image.open(path).convert("RGB").resize((32, 32), resample=Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / 255.0  # HWC in [0,1]
        raw.append(torch.from_numpy(arr).permute(2, 0, 1))
    unit = torch.stack(raw).contiguous()  # [2,3,32,32] in [0,1]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return unit, ((unit - mean) / std).contiguous()


def randomise(model: torch.nn.Module, seed: int = 0):
    """Overwrite every trainable parameter with seeded random values (position embeddings stay)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("position_embeddings") or name.endswith("decoder_pos_embed"):
                continue  # fixed 2-D sin-cos tables, as transformers builds them
            is_norm = "layernorm" in name or "decoder_norm" in name
            if is_norm and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif is_norm and name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("cls_token") or name.endswith("mask_token"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.endswith(".weight"):
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
            else:
                raise RuntimeError(f"unhandled parameter {name}")


def mae_sincos_table(grid: int, dim: int) -> np.ndarray:
    """Original MAE get_2d_sincos_pos_embed (float64): row 1 + r*grid + c is
    [sin(c*w), cos(c*w), sin(r*w), cos(r*w)], w_i = 10000**(-i/(dim/4)); row 0 (CLS) is zero."""
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q, dtype=np.float64) / q)
    out = np.zeros((grid * grid + 1, dim))
    for r in range(grid):
        for c in range(grid):
            out[1 + r * grid + c] = np.concatenate([np.sin(c * omega), np.cos(c * omega),
                                                    np.sin(r * omega), np.cos(r * omega)])
    return out


def fill_position_tables(model: ViTMAEForPreTraining):
    """transformers 5.24 leaves both sin-cos tables of a freshly constructed model at zero (its _init_weights
    skips the encoder table and zeroes the decoder one). Build them with transformers' own methods."""
    emb = model.vit.embeddings
    n = emb.patch_embeddings.num_patches
    emb.patch_embeddings.projection._is_hf_initialized = False
    with torch.no_grad():
        emb.initialize_weights()
        model.decoder.initialize_weights(n)
    grid = int(round(n ** 0.5))
    for t in (emb.position_embeddings, model.decoder.decoder_pos_embed):
        ref = torch.from_numpy(mae_sincos_table(grid, t.shape[-1])).float()
        assert torch.allclose(t[0], ref, atol=1e-6), "position table differs from the MAE formula"


def mask_ratio_for(n: int, n_visible: int) -> float:
    """A mask_ratio r with int(n * (1 - r)) == n_visible, preferring the exact fraction."""
    r = (n - n_visible) / n
    if int(n * (1 - r)) != n_visible:
        r = (n - n_visible - 0.5) / n
    assert int(n * (1 - r)) == n_visible, (n, n_visible, r)
    return r


def noise_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """mask [B,N] (1 = masked) -> noise that keeps visible patches in ascending index order."""
    n = mask.shape[1]
    idx = torch.arange(n, dtype=torch.float32) / n
    return torch.where(mask.bool(), 1.0 + idx, idx.expand_as(mask)).contiguous()


def make_masks(grid: int, seed: int = 1234):
    n = grid * grid
    centre = torch.zeros(grid, grid)
    lo, hi = grid // 4, grid - grid // 4
    centre[lo:hi, lo:hi] = 1.0
    centre = centre.flatten().expand(2, n).contiguous()
    g = torch.Generator().manual_seed(seed)
    n_masked = int(round(0.75 * n))
    rand = torch.zeros(2, n)
    for b in range(2):
        rand[b, torch.randperm(n, generator=g)[:n_masked]] = 1.0
    return {"center": centre, "random": rand}


def run_case(name, cfg_kwargs, data_dir, out_root):
    out = os.path.join(out_root, "mae", name)
    os.makedirs(out, exist_ok=True)
    config = ViTMAEConfig(**cfg_kwargs)
    model = ViTMAEForPreTraining(config)
    model.set_attn_implementation("eager")
    fill_position_tables(model)
    randomise(model, seed=0)
    model.eval()

    model.save_pretrained(out, safe_serialization=True)
    if name == "tiny":
        # Keep what this transformers' save_pretrained writes (5.x: the decoder's blocks as
        # decoder.decoder_encoder.layer.N.*): the loader must read both layouts.
        tf5 = os.path.join(out_root, "mae", "tiny_tf5")
        os.makedirs(tf5, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(out, f), os.path.join(tf5, f))
    # Rewrite model.safetensors in the hub (transformers 4.x) key layout.
    sd = {hub_name(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    assert len(sd) == len(model.state_dict())
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    # Round trip: from_pretrained must see exactly these tensors.
    reloaded = ViTMAEForPreTraining.from_pretrained(out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k
    if not cfg_kwargs.get("norm_pix_loss"):
        # The same state dict as a torch (zip) pickle, the other format hub repos ship.
        torch.save(sd, os.path.join(out, "pytorch_model.bin"))

    unit, pixel_values = load_images(data_dir)
    grid = config.image_size // config.patch_size
    n = grid * grid
    p, c = config.patch_size, config.num_channels
    tensors = {"pixel_values": pixel_values, "pixel_values_unit": unit}
    info = {}
    for mname, mask in make_masks(grid).items():
        n_visible = int(n - mask[0].sum().item())
        assert all(int(n - m.sum().item()) == n_visible for m in mask)
        model.config.mask_ratio = mask_ratio_for(n, n_visible)
        info[mname] = {"mask_ratio": model.config.mask_ratio, "visible": n_visible, "num_patches": n}
        noise = noise_from_mask(mask)
        with torch.no_grad():
            o = model(pixel_values=pixel_values, noise=noise, output_hidden_states=True)
            enc = model.vit(pixel_values=pixel_values, noise=noise)
        assert torch.equal(o.mask, mask), "transformers mask differs from the requested mask"
        hs = o.hidden_states
        assert len(hs) == config.num_hidden_layers + 1
        # hidden_states[0] is the embedding output (cls + visible tokens, in ascending order)
        emb, _, _ = model.vit.embeddings(pixel_values, noise=noise)
        assert torch.allclose(hs[0], emb)
        assert torch.allclose(model.vit.layernorm(hs[-1]), enc.last_hidden_state)
        tensors[f"{mname}_noise"] = noise
        tensors[f"{mname}_mask"] = o.mask.contiguous()
        tensors[f"{mname}_ids_restore"] = o.ids_restore.to(torch.int64).contiguous()
        for k, h in enumerate(hs):
            tensors[f"{mname}_encoder_hidden_states_{k}"] = h.contiguous()
        tensors[f"{mname}_encoder_last_hidden_state"] = enc.last_hidden_state.contiguous()
        tensors[f"{mname}_logits"] = o.logits.contiguous()
        tensors[f"{mname}_loss"] = o.loss.detach().reshape(()).contiguous()
        tensors[f"{mname}_logits_unpatchified"] = model.unpatchify(o.logits).contiguous()
        if config.norm_pix_loss:
            target = model.patchify(pixel_values)
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased (N-1), as in the loss
            recon = o.logits * (var + 1.0e-6) ** 0.5 + mean
            tensors[f"{mname}_reconstruction_unnormalised"] = recon.contiguous()
            tensors[f"{mname}_reconstruction_unnormalised_image"] = model.unpatchify(recon).contiguous()
        assert o.logits.shape == (2, n, p * p * c)
    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
    case_path = os.path.join(out, "case.safetensors")
    # One metadata key only: safetensors writes a multi-key metadata map in arbitrary order.
    save_file(tensors, case_path, metadata={"format": "pt"})
    for f in sorted(os.listdir(out)):
        print(f"wrote {os.path.join(out, f)} ({os.path.getsize(os.path.join(out, f))} bytes)")
    for mname, d in info.items():
        print(f"  {name}/{mname}: mask_ratio={d['mask_ratio']!r} visible={d['visible']}/{d['num_patches']} "
              f"loss={tensors[mname + '_loss'].item():.6f}")
    return info


def write_manifest(name, cfg_kwargs, out_root):
    config = ViTMAEConfig(**cfg_kwargs)
    with torch.device("meta"):
        model = ViTMAEForPreTraining(config)
    internal = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    tensors = [[hub_name(k), s] for k, s in internal]
    assert len({t[0] for t in tensors}) == len(tensors)
    full = config.to_dict()
    cfg = {"architectures": ["ViTMAEForPreTraining"], "model_type": config.model_type}
    cfg.update({k: full[k] for k in ViTMAEConfig.__annotations__ if k in full})
    doc = {
        "model": f"facebook/{name}",
        "class": "ViTMAEForPreTraining",
        "config": cfg,
        "tensors": tensors,
        "key_layout": "hub checkpoint layout (transformers 4.x names), as stored in the published model.safetensors",
        "tensors_transformers5_internal": [[k, s] for k, s in internal],
        "num_parameters": int(sum(np.prod(s) for _, s in internal)),
        "source": "config values written by hand from the published config.json of the checkpoint "
                  "(transformers' convert_vit_mae_to_pytorch.py builds ViTMAEConfig() with defaults, i.e. "
                  "norm_pix_loss=False, from the MAE 'visualize' checkpoints); shapes from "
                  f"transformers {transformers.__version__} ViTMAEForPreTraining on the meta device",
    }
    path = os.path.join(out_root, "mae", f"{name}-manifest.json")
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
        run_case(name, cfg, args.data, args.out)
    for name, cfg in HUB_CONFIGS.items():
        write_manifest(name, cfg, args.out)


if __name__ == "__main__":
    main()
