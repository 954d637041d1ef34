#!/usr/bin/env python3
"""The whole `i2i-unlearn inpaint` command against the same work in transformers, one run.

  python tools/bench/inpaint_vs_transformers.py --images DIR --threads 2 [--n 48] [--batch 8]

Same work on both sides: the first --n PNG / JPEG files of DIR (any size), resized to 224 px, a
random MAE-base checkpoint saved with `save_pretrained` (safetensors; speed does not depend on the
weights' values), the centre 8 x 8 patches hidden, the prediction pasted into the hole, one PNG
written per image.

- transformers, as its users run it: `ViTMAEForPreTraining.from_pretrained(folder)` (its default
  attention), `ViTImageProcessor` (bicubic resize, ImageNet normalisation), batches of --batch,
  the mask through `noise`, `unpatchify`, un-normalise, paste, PIL `save`. Timed in-process from
  the model load to the last file written: the interpreter's start and `import torch` are not
  counted (they favour the reference).
- i2i-unlearn: the whole `inpaint` process (start, checkpoint load and hash, decoding, resizing,
  forward, PNG writing), RAYON_NUM_THREADS = --threads.

Best of --repeats on each side; prints the CPU line, both times and the ratio.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

import numpy as np
import torch
from PIL import Image
from transformers import ViTImageProcessor, ViTMAEForPreTraining

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mae_vs_transformers import centre_noise, config  # noqa: E402
from side_by_side import cpu_line  # noqa: E402


def reference(model_dir, files, out, batch):
    t = time.perf_counter()
    model = ViTMAEForPreTraining.from_pretrained(model_dir).eval()
    proc = ViTImageProcessor.from_pretrained(model_dir)
    mean = torch.tensor(proc.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std).view(1, 3, 1, 1)
    p = model.config.patch_size
    with torch.no_grad():
        for i in range(0, len(files), batch):
            chunk = files[i:i + batch]
            x = proc(images=[Image.open(f).convert("RGB") for f in chunk], return_tensors="pt").pixel_values
            noise, _ = centre_noise(x.shape[0])
            o = model(pixel_values=x, noise=noise)
            assert int(o.mask[0].sum()) == 64, "the hole must be exactly the centre 8 x 8 patches"
            pred = model.unpatchify(o.logits)
            hole = o.mask.unsqueeze(-1).repeat(1, 1, p * p * 3)
            hole = model.unpatchify(hole)
            y = (x * (1 - hole) + pred * hole) * std + mean
            y = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for f, im in zip(chunk, y):
                Image.fromarray(np.ascontiguousarray(im)).save(os.path.join(out, os.path.splitext(os.path.basename(f))[0] + ".png"))
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--release"], cwd=root, check=True, env={**os.environ, "CARGO_TARGET_DIR": a.target_dir})
    exe = os.path.join(a.target_dir, "release", "i2i-unlearn")
    env = {**os.environ, "RAYON_NUM_THREADS": str(a.threads)}
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))[:a.n]
    if len(files) < a.n:
        sys.exit(f"{a.images}: {len(files)} images, --n asks for {a.n}")
    with tempfile.TemporaryDirectory() as tmp:
        imgs = os.path.join(tmp, "images")
        os.makedirs(imgs)
        for i, f in enumerate(files):
            shutil.copy(f, os.path.join(imgs, f"{i:04d}{os.path.splitext(f)[1].lower()}"))
        files = sorted(os.path.join(imgs, f) for f in os.listdir(imgs))
        model_dir = os.path.join(tmp, "mae-base")
        cfg = config("base")
        # Keep exactly the 132 patches outside the centre: with its default mask_ratio (0.75)
        # ViTMAE would keep only 49 of them and do a third of the encoder's work.
        _, visible = centre_noise(1)
        cfg.mask_ratio = 1.0 - visible / 196.0
        assert int(196 * (1 - cfg.mask_ratio)) == visible
        ViTMAEForPreTraining(cfg).save_pretrained(model_dir)
        # facebook/vit-mae-base's processor: bicubic resize to 224, ImageNet mean / std.
        ViTImageProcessor(size={"height": 224, "width": 224}, resample=3).save_pretrained(model_dir)
        t_ref, t_ours = float("inf"), float("inf")
        for r in range(a.repeats):
            out = os.path.join(tmp, f"ref{r}")
            os.makedirs(out)
            t_ref = min(t_ref, reference(model_dir, files, out, a.batch))
            out = os.path.join(tmp, f"ours{r}")
            t = time.perf_counter()
            subprocess.run([exe, "inpaint", "--model", model_dir, "--images", imgs, "--out", out, "--mask", "center:8",
                            "--batch-size", str(a.batch), "--quiet"], env=env, check=True)
            t_ours = min(t_ours, time.perf_counter() - t)
            assert len(os.listdir(out)) == len(files), "i2i-unlearn wrote a different number of images"
    model, cpus, isa = cpu_line()
    print(f"CPU: {model} ({cpus} logical CPUs; {', '.join(isa)})")
    print(f"{a.threads} threads each side, torch {torch.__version__}, best of {a.repeats}")
    print(f"inpaint {len(files)} images, MAE-base, centre 8x8 patches, batch {a.batch}:")
    print(f"  transformers (in-process, model load included)  {t_ref:7.2f} s  {len(files) / t_ref:6.2f} img/s")
    print(f"  i2i-unlearn inpaint (whole process)               {t_ours:7.2f} s  {len(files) / t_ours:6.2f} img/s"
          f"  ratio {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
