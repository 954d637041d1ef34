#!/usr/bin/env python3
"""MAGE on CPU, i2i-unlearn (candle) against the paper's OFFICIAL code, same threads, same shapes, one run.

  I2I_MAGE_DIR=../i2i_mage python tools/bench/mage_vs_official.py --size base --threads 2
  python tools/bench/mage_vs_official.py --official ../i2i_mage --size tiny --iters 1 --no-ours

The official side is the `i2i` branch of github.com/jpmorganchase/i2i_mage (`--official DIR` or
$I2I_MAGE_DIR), imported with the shims of tools/reference/mage_reference.py (pytorch_lightning,
torch._six, Tensor.cuda, the `config/vqgan.yaml` path); nothing of it is copied here. Random weights
(speed does not depend on their values); `vqgan_ckpt_path=None`, so no checkpoint is read.

Sizes: `base` = the paper's model: tokenizer of config/vqgan.yaml (256 px, ch 128, ch_mult
[1,1,2,2,4], 2 res blocks, z 256, codebook 1024 x 256) and `mage_vit_base_patch16` (768 wide,
12 blocks, 12 heads; decoder 768 wide, 8 blocks, 16 heads). `tiny` = TINY below (32 px, 8x8
tokens), for a quick check. `--print-config` prints the size as the JSON of our MageConfig
({vqgan, mage}; fields not given keep the defaults = base).

Measures, each in a fresh process (`--child`), so that each peak RSS is that measurement's alone:
  1. inpaint: MaskGIT inpainting as testpaint.py's test_single_inpaint (centre hole of half the
     side, 128x128 at 256 px, filled with the ImageNet mean; token mask = hole +-1 token, 100 of 256)
     -> inpaint_image_mage_multisteps(num_iter=20, choice_temperature=6.0): Categorical sampling,
     Gumbel re-masking, the iterations whose cosine ratio is >= the mask rate skipped (6 run at
     base), from the tokenizer encode of the masked images to the decode of the final tokens, with
     the official modules, under no_grad, eval mode. Left out: the mask visualisation, the PIL
     blur compositing, file IO. Images/s = batch / seconds per call (one warm-up call first).
  2. unlearn: one "ours" step of engine_unlearn.train_one_epoch (no amp / GradScaler on CPU):
     student (train mode) forward with train_encoder=True (the official random masking and
     dropping), frozen deep-copied teacher (eval, no_grad) on the images and on the 'normal' noise
     images with the same masks, the official compute_loss (retain 1.0, forget 0.25), backward,
     clip_grad_norm_(3.0), AdamW (betas 0.9/0.95, wd 0.05, timm's no-decay groups for biases and
     norms; the student's parameters that require grad), zero_grad. Batch = B images in all, the
     first B//2 labelled < 100 (forget), the rest retain. Images/s = B / seconds per step (one
     warm-up step first, which also creates the optimiser state).
  3. memory: the peak RSS (ru_maxrss / VmHWM) of an unlearn run (warm-up step + 1 step) at batch
     1, 2, 4, 8, each in a fresh process, both sides.

Our side: `cargo build --release --example mage_bench`, then
  $CARGO_TARGET_DIR/release/examples/mage_bench --size base|tiny --what inpaint|unlearn --batch N --iters K
with RAYON_NUM_THREADS=threads (and CANDLE_NUM_THREADS=1, as the CLI sets it), whose last stdout line is
  {"images_per_s": float, "peak_rss_mib": float, "cpu": "..."}
The official children print the same contract (plus a few details). `--no-ours` skips our side.
"""
import argparse, json, os, sys, time

import numpy as np
import torch

from side_by_side import build_ours, cpu_line, fmt, print_child, run_child, run_ours, vm_rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

NUM_ITER = 20              # test_single_inpaint -> inpaint_image_mage_multisteps(num_iter=20,
CHOICE_TEMPERATURE = 6.0   #                                                    choice_temperature=6.0)
CONFIDENCE_OF_KNOWN_TOKENS = 1e20
MASK_RATIO_KW = dict(mask_ratio_min=0.5, mask_ratio_max=1.0, mask_ratio_mu=0.55, mask_ratio_std=0.25)
RETAIN_ALPHA, FORGET_ALPHA, GRAD_CLIP, WEIGHT_DECAY, BLR = 1.0, 0.25, 3.0, 0.05, 1e-4

# Our MageConfig layout (src/models/mage/config.rs); omitted fields = defaults = base.
TINY = {
    "vqgan": {"embed_dim": 32, "n_embed": 64,
              "ddconfig": {"double_z": False, "z_channels": 32, "resolution": 32, "in_channels": 3, "out_ch": 3,
                           "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [16],
                           "dropout": 0.0}},
    "mage": {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 4,
             "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4, "mlp_ratio": 4.0,
             "layer_norm_eps": 1e-6},
}
BASE = {}
IMPORT_RSS_MIB = float("nan")


# ----------------------------------------------------------------------------------------------
# the official code
# ----------------------------------------------------------------------------------------------
def official(official_dir, size):
    """models_mage, engine_unlearn, the MAGE model of `size` (random weights) and its geometry."""
    import functools
    from omegaconf import OmegaConf
    from mage_reference import import_official  # the shims (pytorch_lightning, torch._six, .cuda)
    models_mage, engine_unlearn, _ = import_official(official_dir)
    real = OmegaConf.load(os.path.join(os.path.abspath(official_dir), "config", "vqgan.yaml"))
    if size == "base":
        vq = real
    else:
        vq = OmegaConf.create({"model": {"target": real.model.target, "params": TINY["vqgan"]}})
        assert set(vq.model.params.ddconfig.keys()) == set(real.model.params.ddconfig.keys())

    class VqYaml:  # the constructor's OmegaConf.load('config/vqgan.yaml'), whatever the cwd
        @staticmethod
        def load(path):
            assert os.path.normpath(path) == os.path.join("config", "vqgan.yaml"), path
            return vq

    models_mage.OmegaConf = VqYaml
    global IMPORT_RSS_MIB
    IMPORT_RSS_MIB = vm_rss_mib()  # the official code and its imports loaded, no model yet
    torch.manual_seed(0)
    if size == "base":
        model = models_mage.mage_vit_base_patch16(norm_pix_loss=False, vqgan_ckpt_path=None, **MASK_RATIO_KW)
    else:
        kw = {k: v for k, v in TINY["mage"].items() if k != "layer_norm_eps"}
        model = models_mage.MaskedGenerativeEncoderViT(
            **kw, norm_layer=functools.partial(torch.nn.LayerNorm, eps=TINY["mage"]["layer_norm_eps"]),
            norm_pix_loss=False, vqgan_ckpt_path=None, **MASK_RATIO_KW)
    img = int(vq.model.params.ddconfig.resolution)
    grid = model.num_grid_rows
    assert 2 ** (len(vq.model.params.ddconfig.ch_mult) - 1) * grid == img
    return models_mage, engine_unlearn, model, img, grid, int(vq.model.params.embed_dim)


def mask_by_random_topk(mask_len, probs, temperature):
    """testpaint.mask_by_random_topk: log-confidence plus numpy Gumbel noise, cut at mask_len."""
    mask_len = mask_len.squeeze()
    confidence = torch.log(probs) + torch.Tensor(temperature * np.random.gumbel(size=probs.shape))
    sorted_confidence, _ = torch.sort(confidence, axis=-1)
    cut_off = sorted_confidence[:, mask_len.long() - 1:mask_len.long()]
    return confidence <= cut_off


def maskgit_inpaint(model, images_masked, token_all_mask, grid, embed_dim, seed=0):
    """testpaint.inpaint_image_mage_multisteps without the visualisation, compositing and saving
    (256 tokens and the 16x16x256 code shape, hard-coded there, read from the model here)."""
    torch.manual_seed(0)
    np.random.seed(0)
    codebook_size = model.codebook_size
    mask_token_id = model.mask_token_label
    unknown_number_in_the_beginning = grid * grid
    z_q, _, token_tuple = model.vqgan.encode(images_masked)
    _, _, token_indices = token_tuple
    token_indices = token_indices.reshape(z_q.size(0), -1)
    token_indices[token_all_mask.nonzero(as_tuple=True)] = mask_token_id
    mask_rate = token_all_mask.sum() / np.prod(token_all_mask.shape)
    bsz = images_masked.size(0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    run = 0
    for step in range(NUM_ITER):
        ratio = 1. * (step + 1) / NUM_ITER
        mask_ratio = np.cos(np.pi / 2. * ratio)
        if mask_ratio >= mask_rate:
            continue
        run += 1
        cur_ids = token_indices.clone().long()
        token_indices = torch.cat([torch.zeros(token_indices.size(0), 1), token_indices], dim=1)
        token_indices[:, 0] = model.fake_class_label
        token_indices = token_indices.long()
        step_all_mask = token_indices == mask_token_id
        token_drop_mask = torch.zeros_like(token_indices)
        x = model.token_emb(token_indices)
        for blk in model.blocks:
            x = blk(x)
        x = model.norm(x)
        logits = model.forward_decoder(x, token_drop_mask, step_all_mask)
        logits = logits[:, 1:, :codebook_size]
        sampled_ids = torch.distributions.categorical.Categorical(logits=logits).sample()
        unknown_map = cur_ids == mask_token_id
        sampled_ids = torch.where(unknown_map, sampled_ids, cur_ids)
        probs = torch.nn.functional.softmax(logits, dim=-1)
        selected_probs = torch.squeeze(torch.gather(probs, dim=-1, index=torch.unsqueeze(sampled_ids, -1)), -1)
        selected_probs = torch.where(unknown_map, selected_probs.double(), CONFIDENCE_OF_KNOWN_TOKENS).float()
        mask_len = torch.Tensor([np.floor(unknown_number_in_the_beginning * mask_ratio)])
        mask_len = torch.maximum(torch.Tensor([1]),
                                 torch.minimum(torch.sum(unknown_map, dim=-1, keepdims=True) - 1, mask_len))
        masking = mask_by_random_topk(mask_len[0], selected_probs, CHOICE_TEMPERATURE * (1 - ratio))
        token_indices = torch.where(masking, mask_token_id, sampled_ids)
    z_q = model.vqgan.quantize.get_codebook_entry(sampled_ids, shape=(bsz, grid, grid, embed_dim))
    return model.vqgan.decode(z_q), run


def child_inpaint(a):
    from mage_reference import testpaint_center_masks  # test_single_inpaint's hole and token mask
    _, _, model, img, grid, embed_dim = official(a.official, a.size)
    model.eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(a.batch, 3, img, img, generator=g)
    images_masked, token_all_mask, _ = testpaint_center_masks(images, grid)
    with torch.no_grad():
        _, run = maskgit_inpaint(model, images_masked, token_all_mask, grid, embed_dim)  # warm-up
        t = time.perf_counter()
        for _ in range(a.iters):
            out, _ = maskgit_inpaint(model, images_masked, token_all_mask, grid, embed_dim)
        secs = (time.perf_counter() - t) / a.iters
    assert out.shape == images.shape
    return {"images_per_s": a.batch / secs, "seconds_per_iter": secs, "maskgit_steps": run,
            "masked_tokens": int(token_all_mask[0].sum()), "tokens": grid * grid}


def child_unlearn(a):
    import copy
    try:
        from timm.optim import param_groups_weight_decay as add_weight_decay
    except ImportError:  # older timm: the name main_unlearn.py uses
        from timm.optim.optim_factory import add_weight_decay
    _, engine_unlearn, student, img, _, _ = official(a.official, a.size)
    teacher = copy.deepcopy(student)  # main_unlearn.py: teacher_model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(add_weight_decay(student, WEIGHT_DECAY), lr=BLR * a.batch / 256,
                                  betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(1)
    samples = torch.rand(a.batch, 3, img, img, generator=g)
    labels = torch.tensor([5 if i < a.batch // 2 else 150 for i in range(a.batch)])
    student.train(True)
    optimizer.zero_grad()

    def step():
        latent, _, _, _, _, token_drop_mask_raw, token_all_mask_raw = student(samples, train_encoder=True)
        with torch.no_grad():
            teacher.eval()
            guide, *_ = teacher(samples, train_encoder=True, token_drop_mask_raw=token_drop_mask_raw,
                                token_all_mask_raw=token_all_mask_raw)
            std = torch.std(samples)  # noise_type 'normal'
            mis_guide_input = torch.clamp(torch.randn_like(samples) * std + torch.mean(samples), 0.0, 1.0)
            mis_guide, *_ = teacher(mis_guide_input, train_encoder=True, token_drop_mask_raw=token_drop_mask_raw,
                                    token_all_mask_raw=token_all_mask_raw)
        retain_l2_loss, forget_l2_loss = engine_unlearn.compute_loss(latent, guide, mis_guide, labels)
        loss = RETAIN_ALPHA * retain_l2_loss + FORGET_ALPHA * forget_l2_loss
        assert np.isfinite(loss.item())
        loss.backward()  # NativeScalerWithGradNormCount without the scaler: backward, clip, step
        torch.nn.utils.clip_grad_norm_(student.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad()

    step()
    t = time.perf_counter()
    for _ in range(a.iters):
        step()
    secs = (time.perf_counter() - t) / a.iters
    return {"images_per_s": a.batch / secs, "seconds_per_iter": secs,
            "trainable_params": sum(p.numel() for p in student.parameters() if p.requires_grad)}


# ----------------------------------------------------------------------------------------------
# the parent
# ----------------------------------------------------------------------------------------------



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", default=os.environ.get("I2I_MAGE_DIR"),
                    help="checkout of the i2i branch of jpmorganchase/i2i_mage (default: $I2I_MAGE_DIR)")
    ap.add_argument("--size", default="base", choices=["base", "tiny"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3, help="timed calls / steps, after one warm-up")
    ap.add_argument("--what", default="inpaint,unlearn,memory", help="comma list of inpaint, unlearn, memory")
    ap.add_argument("--mem-batches", default="1,2,4,8")
    ap.add_argument("--no-ours", action="store_true", help="only the official side (no cargo, no mage_bench)")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--print-config", action="store_true", help="print the size as our MageConfig JSON and exit")
    ap.add_argument("--child", choices=["inpaint", "unlearn"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.print_config:
        print(json.dumps(TINY if a.size == "tiny" else BASE))
        return 0
    whats = [w for w in a.what.split(",") if w]
    if not whats or any(w not in ("inpaint", "unlearn", "memory") for w in whats):
        ap.error(f"--what {a.what}: a comma list of inpaint, unlearn, memory")
    if not a.official:
        sys.exit("pass --official DIR or set I2I_MAGE_DIR (git clone -b i2i https://github.com/jpmorganchase/i2i_mage)")
    a.official = os.path.abspath(a.official)
    torch.set_num_threads(a.threads)

    if a.child:
        print_child(child_inpaint(a) if a.child == "inpaint" else child_unlearn(a), IMPORT_RSS_MIB)
        return 0

    load_before = os.getloadavg()[0]
    exe = build_ours(a, ROOT, "mage_bench")

    rows, mem, notes = [], [], {}
    for what in ("inpaint", "unlearn"):
        if what in whats:
            ref = run_child(__file__, a, what, a.batch, a.iters)
            ours = run_ours(a, exe, what, a.batch, a.iters)
            rows.append((what, a.batch, ref, ours))
            notes[what] = ref
    if "memory" in whats:
        for b in [int(x) for x in a.mem_batches.split(",") if x]:
            mem.append((b, run_child(__file__, a, "unlearn", b, 1), run_ours(a, exe, "unlearn", b, 1)))

    model, ncpu, isa = cpu_line()
    print(f"CPU: {model} ({ncpu} logical CPUs), ISA: {' '.join(isa) or 'none of avx/avx2/avx512'}; "
          f"load average before {load_before:.2f}" + (" (busy machine: figures unreliable)" if load_before > 0.5 else ""))
    print(f"official: torch {torch.__version__}, torch.get_num_threads() {torch.get_num_threads()}, "
          f"kernels {torch.backends.cpu.get_cpu_capability()}; "
          f"ours: RAYON_NUM_THREADS={a.threads}" + (" (not run: --no-ours)" if exe is None else ""))
    ours_cpu = {o.get("cpu") for *_, o in rows + mem if o and o.get("cpu")}
    if ours_cpu:
        print(f"mage_bench reports cpu: {'; '.join(sorted(ours_cpu))}")
    if a.size == "base":
        print("MAGE-base 256 px: VQGAN ch 128 x [1,1,2,2,4], 2 res blocks, codebook 1024 x 256; "
              "ViT-B 12 x 768 (12 heads), decoder 8 x 768 (16 heads); random weights")
    else:
        print(f"MAGE-tiny: {json.dumps(TINY)}")
    if "inpaint" in notes:
        r = notes["inpaint"]
        print(f"inpaint: centre hole, {r['masked_tokens']}/{r['tokens']} tokens masked, num_iter {NUM_ITER} "
              f"({r['maskgit_steps']} run), choice_temperature {CHOICE_TEMPERATURE}, sampled; encode..decode")
    if "unlearn" in notes:
        print(f"unlearn: ours step (student + teacher x2, backward, clip {GRAD_CLIP}, AdamW), "
              f"B images per step, {notes['unlearn']['trainable_params'] / 1e6:.1f} M trainable parameters")
    if rows:
        print(f"{'what':<9}{'batch':>6}{'official img/s':>16}{'ours img/s':>12}{'ratio':>8}"
              f"{'RSS official MiB':>18}{'RSS ours MiB':>14}")
        for what, b, ref, ours in rows:
            o = ours["images_per_s"] if ours else None
            print(f"{what:<9}{b:>6}{ref['images_per_s']:>16.3f}{fmt(o, '.3f'):>12}"
                  f"{fmt(o / ref['images_per_s'] if o else None, '.2f'):>8}"
                  f"{ref['peak_rss_mib']:>18.0f}{fmt(ours['peak_rss_mib'] if ours else None, '.0f'):>14}")
    base = [r["import_rss_mib"] for _, _, r, _ in rows] + [r["import_rss_mib"] for _, r, _ in mem]
    if base:
        print(f"(official RSS includes ~{min(base):.0f} MiB of Python + the imported modules before any model)")
    if mem:
        print("peak RSS of an unlearn run (fresh process, warm-up step + 1 step):")
        print(f"{'batch':>6}{'official MiB':>14}{'ours MiB':>10}{'ours/official':>15}")
        for b, ref, ours in mem:
            o = ours["peak_rss_mib"] if ours else None
            print(f"{b:>6}{ref['peak_rss_mib']:>14.0f}{fmt(o, '.0f'):>10}"
                  f"{fmt(o / ref['peak_rss_mib'] if o else None, '.2f'):>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
