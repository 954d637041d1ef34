#!/usr/bin/env python3
"""Palette (diffusion) on CPU, i2i-unlearn (candle) against the paper's OFFICIAL code, same threads, same shapes, one run.

  I2I_PALETTE_DIR=../i2i_palette python tools/bench/palette_vs_official.py --size base --threads 2
  python tools/bench/palette_vs_official.py --official ../i2i_palette --size tiny --iters 1 --no-ours

The official side is the `i2i` branch of
github.com/jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models (`--official DIR` or
$I2I_PALETTE_DIR): its `models.network.Network` (module_name 'guided_diffusion') is imported from
that directory, nothing of it is copied here (the only shims: stand-ins for tqdm, pandas and
torchvision where they are not installed, which the benchmarked code does not call). Random
weights (speed does not depend on their values; `init_weights()` kaiming, as
models/__init__.define_network does for phase 'train'); no checkpoint is read.

Sizes (`--print-config` prints the size as the JSON {"unet", "beta_schedule"} that our PaletteConfig
parses, the official field names): `base` = the paper's Places2 network of
config/inpainting_places2_unlearn.json (UNet 6 -> 3 channels, inner 64, mults [1,2,4,8], attn_res
[16] with 32-channel heads -- no level of this UNet is downsampled 16x (rates 1, 2, 4, 8), so its
only attention block is the middle block's, at 32x32 -- 2 res blocks, 256 px; beta schedules: train linear 1e-6 -> 0.01, test linear 1e-4 -> 0.09, 2000 steps
each). `tiny` = TINY below (32 px), for a
quick check.

Measures, each in a fresh process (`--child`), so that each peak RSS is that measurement's alone:
  1. forward: one UNet call denoise_fn(cat([y_cond, y_t], 1), gammas) with the test schedule's
     gamma at a step (as Network.p_mean_variance calls it), under no_grad, eval mode, batch B for
     each B of --forward-batch. That is one sampling step of the evaluation (Network.restoration runs
     2000 of them per image), so the paper's evaluation (10,000 images x 2000 steps) is estimated at
     10,000 x 2000 / (images/s) hours. Images/s = B / seconds per call (one warm-up call first, then
     the best of --iters calls).
  2. unlearn: one step of the paper's method ("ours" in the official README: unlearn.py
     --fix_decoder 1 --max_loss 0 --learn_noise 0 --learn_others 0, --forget_alpha 0.1 as in the
     README's example and unlearn.py's default) = Palette.unlearn_step_fix_decoder without its loader
     and logging: Network with teacher_denoise_fn = deepcopy(denoise_fn) (unlearn.py; frozen and in
     eval mode here, which computes the same since dropout is 0 and the norms are GroupNorm),
     set_new_noise_schedule(phase='train'), student in train mode, loss = net(y0, y_cond, mask,
     labels=labels, fix_decoder=True) (the branch learn_noise 0 / max_loss 0 / mask / fix_decoder:
     teacher encoder features on the label-mixed noisy image under no_grad, student encoder features
     (return_feat=True: input_blocks + middle_block, the decoder is not run) on the plain noisy image,
     the sum over the features of the weighted retain/forget MSE), backward, Adam(lr 5e-5,
     weight_decay 0) step, zero_grad. Masks: a centre box of half the side (the `center` mask of
     the official dataset; the unlearning config uses `hybrid` = random box | brush strokes, whose
     area does not change the cost), y_cond = y0 * (1 - m) + m * randn (ForgetInpaintDataset), y0 in
     [-1, 1], labels: the first B//2 -1 (forget), the rest +1 (retain). Images/s = B / seconds per
     step (one warm-up step first, which also creates the optimiser state).
     What the official code trains: it freezes nothing by requires_grad. Palette.__init__ builds
     Adam over all of denoise_fn's parameters before unlearn.py attaches the teacher; the decoder
     (output_blocks, out) is never run with fix_decoder, so its gradients stay None and Adam skips
     it. What moves is the encoder = input_blocks + middle_block, and cond_embed (the gamma
     embedding MLP feeds every encoder ResBlock). The optimiser here is built the same way.
     Not included unless --official-ema: the official loop also keeps an EMA copy of netG
     (ema_scheduler of the config: decay 0.9999, from the first step on, every step), a third
     copy of the UNet in memory and one more pass over its parameters per step.
  3. memory: the peak RSS (ru_maxrss / VmHWM) of an unlearn run (warm-up step + 1 step) at batch
     1, 2, 4 (--mem-batches), each in a fresh process, both sides.

Our side: `cargo build --release --example palette_bench`, then
  $CARGO_TARGET_DIR/release/examples/palette_bench --size base|tiny --what forward|unlearn --batch N --iters K
with RAYON_NUM_THREADS=threads (and CANDLE_NUM_THREADS=1, as the CLI sets it), whose last stdout line is
  {"images_per_s": float, "peak_rss_mib": float, "cpu": "..."}
The official children print the same contract (plus a few details). `--no-ours` skips our side.
`--json FILE` writes every figure.
"""
import argparse, copy, importlib.machinery, importlib.util, json, os, sys, time, types

import torch

from side_by_side import build_ours, cpu_line, fmt, print_child, run_child, run_ours, vm_rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FORGET_ALPHA = 0.1           # unlearn.py --forget_alpha default, and the README's example for "ours"
LR, WEIGHT_DECAY = 5e-5, 0.0  # config "optimizers": [{"lr": 5e-5, "weight_decay": 0}]
EMA_DECAY = 0.9999           # config ema_scheduler (only with --official-ema)
EVAL_IMAGES, EVAL_STEPS = 10_000, 2000  # the paper's evaluation: 10K Places365 test images, 2000 steps

SCHEDULES = {
    "train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 0.01},
    "test": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-4, "linear_end": 0.09},
}
# The official config's field names, which our PaletteConfig (src/models/palette) parses.
BASE = {
    "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 64, "channel_mults": [1, 2, 4, 8],
             "attn_res": [16], "num_head_channels": 32, "res_blocks": 2, "dropout": 0.0, "image_size": 256},
    "beta_schedule": SCHEDULES,
}
TINY = {
    "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 32, "channel_mults": [1, 2],
             "attn_res": [2], "num_head_channels": 16, "res_blocks": 1, "dropout": 0.0, "image_size": 32},
    "beta_schedule": SCHEDULES,
}
IMPORT_RSS_MIB = float("nan")


# ----------------------------------------------------------------------------------------------
# the official code
# ----------------------------------------------------------------------------------------------
def shim_missing_modules():
    """Stand-ins for packages the official modules import but the benchmark does not use, only where
    they are not installed: tqdm (models/network.py, restoration's progress bar), pandas (core/logger.py,
    via models/model.py, only for --official-ema's EMA class; LogTracker's table), torchvision
    (core/util.py, make_grid for image saving)."""
    def stub(name, **attrs):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch probes find_spec(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    def missing(name):  # looked up, not imported (importing torchvision alone costs ~150 MiB of RSS)
        return name not in sys.modules and importlib.util.find_spec(name) is None

    if missing("tqdm"):
        stub("tqdm", tqdm=lambda it=None, *a, **k: it)
    if missing("pandas"):
        stub("pandas")
    if missing("torchvision"):
        stub("torchvision", utils=stub("torchvision.utils", make_grid=None))


def official(official_dir, size):
    """models.network.Network of `size` (module_name 'guided_diffusion'), random weights."""
    shim_missing_modules()
    sys.path.insert(0, official_dir)
    from models.network import Network
    global IMPORT_RSS_MIB
    IMPORT_RSS_MIB = vm_rss_mib()  # the official code and its imports loaded, no model yet
    cfg = copy.deepcopy(TINY if size == "tiny" else BASE)
    torch.manual_seed(0)
    net = Network(cfg["unet"], cfg["beta_schedule"], module_name="guided_diffusion", init_type="kaiming")
    net.init_weights()
    return net, cfg["unet"]["image_size"]


def inputs(batch, img, seed=1):
    """y0 in [-1, 1], a centre box mask of half the side (the dataset's `center` mode), and
    ForgetInpaintDataset's cond image y0 * (1 - m) + m * randn."""
    g = torch.Generator().manual_seed(seed)
    y0 = torch.rand(batch, 3, img, img, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, img, img)
    mask[:, :, img // 4:img // 4 + img // 2, img // 4:img // 4 + img // 2] = 1.0
    y_cond = y0 * (1. - mask) + mask * torch.randn(y0.shape, generator=g)
    return y0, y_cond, mask, g


def child_forward(a):
    net, img = official(a.official, a.size)
    from models.network import extract
    net.set_new_noise_schedule(device=torch.device("cpu"), phase="test")
    net.eval()
    _, y_cond, _, g = inputs(a.batch, img)
    y_t = torch.randn(a.batch, 3, img, img, generator=g)
    t = torch.full((a.batch,), net.num_timesteps // 2, dtype=torch.long)
    noise_level = extract(net.gammas, t, x_shape=(1, 1))  # as p_mean_variance
    x = torch.cat([y_cond, y_t], dim=1)
    best = float("inf")
    with torch.no_grad():
        out = net.denoise_fn(x, noise_level)  # warm-up
        for _ in range(a.iters):
            t0 = time.perf_counter()
            out = net.denoise_fn(x, noise_level)
            best = min(best, time.perf_counter() - t0)
    assert out.shape == y_t.shape and torch.isfinite(out).all()
    return {"images_per_s": a.batch / best, "seconds_per_iter": best,
            "unet_params": sum(p.numel() for p in net.denoise_fn.parameters())}


def child_unlearn(a):
    net, img = official(a.official, a.size)
    net.forget_alpha, net.max_loss, net.learn_noise, net.learn_others = FORGET_ALPHA, 0, 0, 0
    # Palette.__init__: Adam over netG's parameters that require grad, before the teacher exists
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=LR, weight_decay=WEIGHT_DECAY)
    net.set_new_noise_schedule(device=torch.device("cpu"), phase="train")
    ema = None
    if a.official_ema:  # Palette.__init__: netG_EMA = deepcopy(netG), also before the teacher
        from models.model import EMA
        ema, net_ema = EMA(beta=EMA_DECAY), copy.deepcopy(net)
    net.teacher_denoise_fn = copy.deepcopy(net.denoise_fn)  # unlearn.py, fix_decoder
    net.teacher_denoise_fn.requires_grad_(False)
    y0, y_cond, mask, _ = inputs(a.batch, img)
    labels = torch.tensor([-1.0 if i < a.batch // 2 else 1.0 for i in range(a.batch)])
    net.train()
    net.teacher_denoise_fn.eval()
    moved = {}

    def step():
        optimizer.zero_grad()
        loss = net(y0, y_cond, mask=mask, labels=labels, fix_decoder=True)
        assert torch.isfinite(loss).item()
        loss.backward()
        if not moved:
            moved["params"] = sum(p.numel() for p in net.denoise_fn.parameters() if p.grad is not None)
        optimizer.step()
        if ema is not None:
            ema.update_model_average(net_ema, net)
        optimizer.zero_grad()

    step()
    t = time.perf_counter()
    for _ in range(a.iters):
        step()
    secs = (time.perf_counter() - t) / a.iters
    enc = sum(p.numel() for m in (net.denoise_fn.input_blocks, net.denoise_fn.middle_block) for p in m.parameters())
    return {"images_per_s": a.batch / secs, "seconds_per_iter": secs,
            "optimised_params": sum(p.numel() for g in optimizer.param_groups for p in g["params"]),
            "params_with_grad": moved["params"], "encoder_params": enc,
            "cond_embed_params": sum(p.numel() for p in net.denoise_fn.cond_embed.parameters()),
            "ema": ema is not None}


# ----------------------------------------------------------------------------------------------
# the parent
# ----------------------------------------------------------------------------------------------



def official_child(a, what, batch, iters):
    return run_child(__file__, a, what, batch, iters, ["--official-ema"] if a.official_ema else [])


def ratio(ref, ours, key):
    return ours[key] / ref[key] if ours and ref[key] else None


def eval_hours(r):
    return None if not r or not r["images_per_s"] else EVAL_IMAGES * EVAL_STEPS / r["images_per_s"] / 3600.0


def batches(s, flag, ap):
    try:
        out = [int(x) for x in s.split(",") if x]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        ap.error(f"{flag} {s}: a comma list of batch sizes >= 1")
    return out


def speed_table(title, rows):
    print(title)
    print(f"{'batch':>6}{'official img/s':>16}{'ours img/s':>12}{'ours/official':>15}"
          f"{'RSS official MiB':>18}{'RSS ours MiB':>14}")
    for b, ref, ours in rows:
        o = ours["images_per_s"] if ours else None
        print(f"{b:>6}{ref['images_per_s']:>16.4f}{fmt(o, '.4f'):>12}{fmt(ratio(ref, ours, 'images_per_s'), '.2f'):>15}"
              f"{ref['peak_rss_mib']:>18.0f}{fmt(ours['peak_rss_mib'] if ours else None, '.0f'):>14}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", default=os.environ.get("I2I_PALETTE_DIR"),
                    help="checkout of the i2i branch of jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models "
                         "(default: $I2I_PALETTE_DIR)")
    ap.add_argument("--size", default="base", choices=["base", "tiny"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="unlearn batch")
    ap.add_argument("--forward-batch", default="1,4", help="comma list of forward batches")
    ap.add_argument("--iters", type=int, default=3, help="timed calls / steps, after one warm-up")
    ap.add_argument("--what", default="forward,unlearn,memory", help="comma list of forward, unlearn, memory")
    ap.add_argument("--mem-batches", default="1,2,4")
    ap.add_argument("--official-ema", action="store_true",
                    help="add the official loop's EMA copy and update to its unlearn step (ours has none)")
    ap.add_argument("--no-ours", action="store_true", help="only the official side (no cargo, no palette_bench)")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    ap.add_argument("--print-config", action="store_true", help="print the size as our PaletteConfig JSON and exit")
    ap.add_argument("--child", choices=["forward", "unlearn"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.print_config:
        print(json.dumps(TINY if a.size == "tiny" else BASE))
        return 0
    whats = [w for w in a.what.split(",") if w]
    if not whats or any(w not in ("forward", "unlearn", "memory") for w in whats):
        ap.error(f"--what {a.what}: a comma list of forward, unlearn, memory")
    fwd_batches = batches(a.forward_batch, "--forward-batch", ap)
    mem_batches = batches(a.mem_batches, "--mem-batches", ap)
    if a.batch < 1 or a.iters < 1 or a.threads < 1:
        ap.error("--batch, --iters and --threads must be >= 1")
    if not a.official:
        sys.exit("pass --official DIR or set I2I_PALETTE_DIR (git clone -b i2i "
                 "https://github.com/jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models)")
    a.official = os.path.abspath(a.official)
    if not os.path.isfile(os.path.join(a.official, "models", "network.py")):
        sys.exit(f"{a.official}: no models/network.py (not a checkout of the official Palette code)")
    torch.set_num_threads(a.threads)

    if a.child:
        print_child(child_forward(a) if a.child == "forward" else child_unlearn(a), IMPORT_RSS_MIB)
        return 0

    load_before = os.getloadavg()[0]
    exe = build_ours(a, ROOT, "palette_bench")

    fwd, unl, mem = [], [], []
    if "forward" in whats:
        for b in fwd_batches:
            fwd.append((b, official_child(a, "forward", b, a.iters), run_ours(a, exe, "forward", b, a.iters)))
    if "unlearn" in whats:
        unl.append((a.batch, official_child(a, "unlearn", a.batch, a.iters), run_ours(a, exe, "unlearn", a.batch, a.iters)))
    if "memory" in whats:
        for b in mem_batches:
            mem.append((b, official_child(a, "unlearn", b, 1), run_ours(a, exe, "unlearn", b, 1)))

    model, ncpu, isa = cpu_line()
    print(f"CPU: {model} ({ncpu} logical CPUs), ISA: {' '.join(isa) or 'none of avx/avx2/avx512'}; "
          f"load average before {load_before:.2f}" + (" (busy machine: figures unreliable)" if load_before > 0.5 else ""))
    print(f"official: torch {torch.__version__}, torch.get_num_threads() {torch.get_num_threads()}, "
          f"kernels {torch.backends.cpu.get_cpu_capability()}; "
          f"ours: RAYON_NUM_THREADS={a.threads} CANDLE_NUM_THREADS=1" + (" (not run: --no-ours)" if exe is None else ""))
    ours_cpu = {o.get("cpu") for _, _, o in fwd + unl + mem if o and o.get("cpu")}
    if ours_cpu:
        print(f"palette_bench reports cpu: {'; '.join(sorted(ours_cpu))}")
    cfg = TINY if a.size == "tiny" else BASE
    u = cfg["unet"]
    print(f"Palette-{a.size} ({'the paper' + chr(39) + 's Places2 network' if a.size == 'base' else 'quick check'}): "
          f"guided_diffusion UNet {u['image_size']} px, inner {u['inner_channel']} x {u['channel_mults']}, "
          f"{u['res_blocks']} res blocks, attn_res {u['attn_res']} ({u['num_head_channels']}-channel heads); "
          f"random weights" + (f", {fwd[0][1]['unet_params'] / 1e6:.1f} M parameters" if fwd else ""))
    if fwd:
        speed_table(f"forward: one UNet call = one of the {EVAL_STEPS} sampling steps, no_grad, eval "
                    f"(best of {a.iters} after a warm-up)", fwd)
    if unl:
        r = unl[0][1]
        print(f"unlearn: ours step (fix_decoder, forget_alpha {FORGET_ALPHA}; teacher + student encoder, backward, "
              f"Adam lr {LR}){' + official EMA' if a.official_ema else ''}, centre-box masks, "
              f"half forget / half retain; {r['params_with_grad'] / 1e6:.2f} M parameters move "
              f"(encoder {r['encoder_params'] / 1e6:.2f} M + cond_embed {r['cond_embed_params'] / 1e6:.2f} M) "
              f"of {r['optimised_params'] / 1e6:.2f} M in Adam")
        speed_table(f"unlearn step (mean of {a.iters} after a warm-up step):", unl)
    base_rss = [r["import_rss_mib"] for _, r, _ in fwd + unl + mem]
    if base_rss:
        print(f"(official RSS includes ~{min(base_rss):.0f} MiB of Python + the imported modules before any model)")
    if mem:
        print("peak RSS of an unlearn run (fresh process, warm-up step + 1 step):")
        print(f"{'batch':>6}{'official MiB':>14}{'ours MiB':>10}{'ours/official':>15}")
        for b, ref, ours in mem:
            o = ours["peak_rss_mib"] if ours else None
            print(f"{b:>6}{ref['peak_rss_mib']:>14.0f}{fmt(o, '.0f'):>10}{fmt(ratio(ref, ours, 'peak_rss_mib'), '.2f'):>15}")
    if fwd:
        print(f"estimated time of the paper's evaluation ({EVAL_IMAGES} images x {EVAL_STEPS} steps, "
              f"UNet calls only, {a.threads} threads):")
        print(f"{'batch':>6}{'official h':>12}{'ours h':>10}")
        for b, ref, ours in fwd:
            print(f"{b:>6}{eval_hours(ref):>12.1f}{fmt(eval_hours(ours), '.1f'):>10}")

    if a.json:
        out = {
            "size": a.size, "config": cfg, "threads": a.threads, "iters": a.iters,
            "cpu": {"model": model, "logical_cpus": ncpu, "isa": isa, "load_average_before": load_before},
            "torch": {"version": torch.__version__, "num_threads": torch.get_num_threads(),
                      "kernels": torch.backends.cpu.get_cpu_capability()},
            "ours_run": exe is not None, "official_ema": a.official_ema,
            "forward": [{"batch": b, "official": ref, "ours": ours, "ratio": ratio(ref, ours, "images_per_s"),
                         "eval_hours_official": eval_hours(ref), "eval_hours_ours": eval_hours(ours)}
                        for b, ref, ours in fwd],
            "unlearn": [{"batch": b, "official": ref, "ours": ours, "ratio": ratio(ref, ours, "images_per_s")}
                        for b, ref, ours in unl],
            "memory": [{"batch": b, "official": ref, "ours": ours, "ratio": ratio(ref, ours, "peak_rss_mib")}
                       for b, ref, ours in mem],
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
