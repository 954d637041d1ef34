#!/usr/bin/env python3
"""MAE on CPU, i2i-unlearn (candle) against transformers, same threads, same shapes, one run.

  python tools/bench/mae_vs_transformers.py --size base --threads 2

transformers runs as its users run it: its default attention (SDPA; `--attn eager` for the
reference implementation of the parity tests), best of `--repeats` timings on each side. The CPU
model, the SIMD instruction sets present and the thread counts are printed with the figures.

Measures (1) inpainting forward throughput of ViTMAEForPreTraining at 224 px with a centre 8x8
patch mask (transformers gets the same mask through `noise`), and (2) one encoder-unlearning
step of the paper's loss ("ours": student encoder on retain + forget batches, frozen teacher on
retain + masked-noise batches, MSE, backward, AdamW on the encoder). Random weights (speed does
not depend on their values). Prints images/s for both and the ratio.
"""
import argparse, json, os, subprocess, sys, time

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import cpu_line  # noqa: E402


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


def attention(model, attn):
    """Leave transformers' default (what its users run) unless `eager` is asked for."""
    if attn == "eager":
        model.set_attn_implementation("eager")
    return model.config._attn_implementation


def best_of(repeats, iters, fn):
    """Seconds per iteration: the best mean over `repeats` timings of `iters` calls."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, (time.perf_counter() - t) / iters)
    return best


def torch_forward(size, batch, iters, repeats, attn):
    cfg = config(size)
    noise, visible = centre_noise(batch)
    cfg.mask_ratio = 1.0 - visible / 196.0
    assert int(196 * (1 - cfg.mask_ratio)) == visible
    model = ViTMAEForPreTraining(cfg).eval()
    used = attention(model, attn)
    x = torch.rand(batch, 3, 224, 224)
    with torch.no_grad():
        model(pixel_values=x, noise=noise)
        secs = best_of(repeats, iters, lambda: model(pixel_values=x, noise=noise))
    return secs, batch, used


def torch_unlearn(size, batch, iters, repeats, attn):
    cfg = config(size)
    noise, visible = centre_noise(batch)
    cfg.mask_ratio = 1.0 - visible / 196.0
    student = ViTMAEForPreTraining(cfg)
    used = attention(student, attn)
    teacher = ViTMAEForPreTraining(cfg).eval()
    attention(teacher, attn)
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
    return best_of(repeats, iters, step), 2 * batch, used


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="base", choices=["base", "large"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--unlearn-batch", default="4,8", help="retain and forget images per step, each (a list)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timings per side; the best is reported")
    ap.add_argument("--attn", default="default", choices=["default", "eager"],
                    help="transformers' attention: its default (SDPA) or eager")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--release", "--example", "mae_bench"], cwd=root, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": a.target_dir})
    exe = os.path.join(a.target_dir, "release", "examples", "mae_bench")
    env = {**os.environ, "RAYON_NUM_THREADS": str(a.threads), "CANDLE_NUM_THREADS": "1"}
    runs = [("forward", a.batch, torch_forward)]
    runs += [("unlearn", int(b), torch_unlearn) for b in a.unlearn_batch.split(",")]
    rows, used = [], "?"
    for what, b, fn in runs:
        secs, n, used = fn(a.size, b, a.iters, a.repeats, a.attn)
        ref = n / secs
        best = None
        for _ in range(a.repeats):
            out = subprocess.run([exe, "--size", a.size, "--batch", str(b), "--iters", str(a.iters), "--what", what],
                                 env=env, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            if best is None or r["images_per_s"] > best["images_per_s"]:
                best = r
        rows.append((what, b, ref, best["images_per_s"], best["peak_rss_mib"]))
    model, cpus, isa = cpu_line()
    print(f"CPU: {model} ({cpus} logical CPUs; {', '.join(isa)}); {a.threads} threads each side "
          f"(torch.set_num_threads, RAYON_NUM_THREADS)")
    print(f"MAE-{a.size} 224 px, centre 8x8 mask, torch {torch.__version__}, transformers attention: {used}, "
          f"best of {a.repeats} x {a.iters} iterations per side")
    print(f"{'what':<10}{'batch':>6}{'transformers img/s':>20}{'i2i-unlearn img/s':>20}{'ratio':>8}{'peak RSS MiB':>14}")
    for what, b, ref, ours, rss in rows:
        print(f"{what:<10}{b:>6}{ref:>20.3f}{ours:>20.3f}{ours / ref:>8.2f}{rss:>14.0f}")


if __name__ == "__main__":
    sys.exit(main())
