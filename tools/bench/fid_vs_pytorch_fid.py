#!/usr/bin/env python3
"""FID on CPU, i2i-unlearn against pytorch-fid 0.3.0, same images, same weights, same threads.

  /path/to/venv/bin/python tools/bench/fid_vs_pytorch_fid.py --a DIR_A --b DIR_B --threads 2

1. Inception throughput: pytorch-fid's `calculate_fid_given_paths` (batch 50, CPU, data-loader
   worker processes as its command line picks them: min(CPUs, 8); --ref-workers) against `i2i-unlearn fid A B` on the same folders, with the same (random) weights:
   pytorch-fid's FID network is built as it builds it, its state dict saved as safetensors and
   given to i2i-unlearn with --weights. Wall time of each whole command; images/s = images / s.
2. The Fréchet distance of 2048-d statistics: two .npz files (mu, sigma of 4096 random 2048-d
   features each), pytorch-fid's `calculate_frechet_distance` (scipy sqrtm) against
   `i2i-unlearn fid a.npz b.npz` (process time, loading included).
Prints both FIDs so the agreement is visible too.
"""
import argparse, os, subprocess, sys, tempfile, time

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import cpu_line  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    # `python -m pytorch_fid` uses min(available CPUs, 8) loader processes unless told otherwise.
    ap.add_argument("--ref-workers", type=int, default=min(len(os.sched_getaffinity(0)), 8))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--release"], cwd=root, check=True, env={**os.environ, "CARGO_TARGET_DIR": a.target_dir})
    exe = os.path.join(a.target_dir, "release", "i2i-unlearn")
    env = {**os.environ, "RAYON_NUM_THREADS": str(a.threads), "CANDLE_NUM_THREADS": "1"}

    import pytorch_fid.inception as pi
    from pytorch_fid import fid_score
    holder = {}

    def fake_download(url, progress=True, **kw):
        # The weights pytorch-fid would download: here the freshly initialised FID network's own.
        net = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pi.FIDInceptionE_1(1280)
        net.Mixed_7c = pi.FIDInceptionE_2(2048)
        sd = {k: v.contiguous() for k, v in net.state_dict().items()}
        holder["sd"] = sd
        return sd

    pi.load_state_dict_from_url = fake_download
    n_images = sum(len([f for f in fs if f.lower().endswith((".png", ".jpg", ".jpeg"))]) for d in (a.a, a.b) for _, _, fs in os.walk(d))
    t = time.perf_counter()
    ref_fid = fid_score.calculate_fid_given_paths([a.a, a.b], 50, "cpu", 2048, num_workers=a.ref_workers)
    t_ref = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "w.safetensors")
        save_file({k: v.float() for k, v in holder["sd"].items() if v.is_floating_point()}, w)
        t = time.perf_counter()
        out = subprocess.run([exe, "fid", a.a, a.b, "--weights", w, "--batch-size", "50", "--quiet"], env=env,
                             capture_output=True, text=True, check=True).stdout
        t_ours = time.perf_counter() - t
        ours_fid = float(out.strip().splitlines()[-1].split()[-1])

        # Fréchet distance of 2048-d statistics.
        rng = np.random.RandomState(0)
        for name in ("s1", "s2"):
            f = rng.randn(4096, 2048) @ (rng.rand(2048, 2048) * 0.05) + rng.rand(2048)
            np.savez(os.path.join(tmp, name + ".npz"), mu=f.mean(0), sigma=np.cov(f, rowvar=False))
        s1, s2 = np.load(os.path.join(tmp, "s1.npz")), np.load(os.path.join(tmp, "s2.npz"))
        t = time.perf_counter()
        ref_fd = fid_score.calculate_frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"])
        t_ref_fd = time.perf_counter() - t
        t = time.perf_counter()
        out = subprocess.run([exe, "fid", os.path.join(tmp, "s1.npz"), os.path.join(tmp, "s2.npz"), "--quiet"], env=env,
                             capture_output=True, text=True, check=True).stdout
        t_ours_fd = time.perf_counter() - t
        ours_fd = float(out.strip().splitlines()[-1].split()[-1])

    model, cpus, isa = cpu_line()
    print(f"CPU: {model} ({cpus} logical CPUs; {', '.join(isa)})")
    print(f"{a.threads} threads each side (torch.set_num_threads, RAYON_NUM_THREADS), torch {torch.__version__}, pytorch-fid 0.3.0 with {a.ref_workers} loader processes")
    print(f"FID of two folders ({n_images} images), whole command:")
    print(f"  pytorch-fid  {t_ref:8.2f} s  {n_images / t_ref:7.2f} img/s  FID {ref_fid:.6f}")
    print(f"  i2i-unlearn  {t_ours:8.2f} s  {n_images / t_ours:7.2f} img/s  FID {ours_fid:.6f}  speed-up {t_ref / t_ours:.2f}x")
    print("Frechet distance of two 2048-d .npz statistics:")
    print(f"  pytorch-fid (scipy sqrtm)  {t_ref_fd:7.2f} s  {ref_fd:.9f}")
    print(f"  i2i-unlearn (process)      {t_ours_fd:7.2f} s  {ours_fd:.9f}  speed-up {t_ref_fd / t_ours_fd:.1f}x  rel. diff {abs(ours_fd - ref_fd) / abs(ref_fd):.1e}")


if __name__ == "__main__":
    sys.exit(main())
