#!/usr/bin/env python3
"""MAE on CPU, i2i-unlearn (candle) against transformers, same threads, same shapes, one run.

  python tools/bench/mae_vs_transformers.py --size base --threads 2

Measures (1) inpainting forward throughput of ViTMAEForPreTraining at 224 px with a centre 8x8
patch mask (transformers gets the same mask through `noise`), and (2) one encoder-unlearning
step of the paper's loss ("ours": student encoder on retain + forget batches, frozen teacher on
retain + masked-noise batches, MSE, backward, AdamW on the encoder). Random weights (speed does
not depend on their values). Prints images/s for both and the ratio.
"""
import argparse, json, os, subprocess, sys, time

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining


def config(size):
    kw = dict(image_size=224, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True,
              decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
              decoder_intermediate_size=2048, norm_pix_loss=False)
    if size == "base":
        kw.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    else:
        kw.update(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    return ViTMAEConfig(**kw)


def centre_noise(batch, grid=14, k=8):
    n = grid * grid
    s = (grid - k) // 2
    hidden = torch.zeros(n, dtype=torch.bool)
    for r in range(s, s + k):
        for c in range(s, s + k):
            hidden[r * grid + c] = True
    idx = torch.arange(n, dtype=torch.float32) / n
    noise = torch.where(hidden, 1.0 + idx, idx)
    return noise.expand(batch, n).contiguous(), int((~hidden).sum())


def torch_forward(size, batch, iters):
    cfg = config(size)
    noise, visible = centre_noise(batch)
    cfg.mask_ratio = 1.0 - visible / 196.0
    assert int(196 * (1 - cfg.mask_ratio)) == visible
    model = ViTMAEForPreTraining(cfg).eval()
    model.set_attn_implementation("eager")
    x = torch.rand(batch, 3, 224, 224)
    with torch.no_grad():
        model(pixel_values=x, noise=noise)
        t = time.perf_counter()
        for _ in range(iters):
            model(pixel_values=x, noise=noise)
    return (time.perf_counter() - t) / iters, batch


def torch_unlearn(size, batch, iters):
    cfg = config(size)
    noise, visible = centre_noise(batch)
    cfg.mask_ratio = 1.0 - visible / 196.0
    student = ViTMAEForPreTraining(cfg)
    student.set_attn_implementation("eager")
    teacher = ViTMAEForPreTraining(cfg).eval()
    teacher.load_state_dict(student.state_dict())
    enc = student.vit
    params = [p for n, p in enc.named_parameters() if "position_embeddings" not in n]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    xr, xf = torch.rand(batch, 3, 224, 224), torch.rand(batch, 3, 224, 224)

    def step():
        with torch.no_grad():
            tr = teacher.vit(pixel_values=xr, noise=noise).last_hidden_state
            n = (xf.mean() + xf.std() * torch.randn_like(xf)).clamp(0, 1)
            tf = teacher.vit(pixel_values=n, noise=noise).last_hidden_state
        sr = enc(pixel_values=xr, noise=noise).last_hidden_state
        sf = enc(pixel_values=xf, noise=noise).last_hidden_state
        loss = torch.nn.functional.mse_loss(sr, tr) + 0.25 * torch.nn.functional.mse_loss(sf, tf)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()

    step()  # the first step also creates the optimiser state; time the ones after it
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t) / iters, 2 * batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="base", choices=["base", "large"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--unlearn-batch", type=int, default=4, help="retain and forget images per step, each")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--release", "--example", "mae_bench"], cwd=root, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": a.target_dir})
    exe = os.path.join(a.target_dir, "release", "examples", "mae_bench")
    env = {**os.environ, "RAYON_NUM_THREADS": str(a.threads), "CANDLE_NUM_THREADS": "1"}
    rows = []
    for what, b, fn in [("forward", a.batch, torch_forward), ("unlearn", a.unlearn_batch, torch_unlearn)]:
        secs, n = fn(a.size, b, a.iters)
        ref = n / secs
        out = subprocess.run([exe, "--size", a.size, "--batch", str(b), "--iters", str(a.iters), "--what", what],
                             env=env, check=True, capture_output=True, text=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        rows.append((what, b, ref, ours["images_per_s"], ours["peak_rss_mib"]))
    print(f"MAE-{a.size} 224 px, centre 8x8 mask, {a.threads} threads, torch {torch.__version__}")
    print(f"{'what':<10}{'batch':>6}{'transformers img/s':>20}{'i2i-unlearn img/s':>20}{'ratio':>8}{'peak RSS MiB':>14}")
    for what, b, ref, ours, rss in rows:
        print(f"{what:<10}{b:>6}{ref:>20.3f}{ours:>20.3f}{ours / ref:>8.2f}{rss:>14.0f}")


if __name__ == "__main__":
    sys.exit(main())
