#!/usr/bin/env python3
"""Parity fixtures from the OFFICIAL Palette code of the paper (the `i2i` branch of
github.com/jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models), run with small random
weights on real photographs.

Writes tests/fixtures/palette_ref/: palette_Network.pth, palette_student.pth, config.json,
case.safetensors. Deterministic, CPU only, float32, no downloads. The official code is imported
from `--official DIR` (default: the environment variable I2I_PALETTE_DIR), a checkout of
    git clone -b i2i https://github.com/jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models
and never copied into this repository.

Usage: python tools/reference/palette_reference.py --official DIR [--data DIR] [--out DIR]

What runs where (every computation is the official code unless said otherwise):
  * network  : models/network.py `Network(unet, beta_schedule, module_name='guided_diffusion')`
               (models/guided_diffusion_modules/unet.py `UNet`) with the tiny config below,
               every parameter re-drawn from a seeded generator (nothing zero, unlike the official
               `zero_module`), `set_new_noise_schedule(cpu, 'train')`, then `state_dict()` saved
               with torch.save, as Palette saves `16_Network.pth`, and loaded back strictly.
  * data     : data/dataset.py `InpaintDataset`'s transforms (torchvision Resize((32, 32)) on the
               PIL image, ToTensor, Normalize(0.5, 0.5)) and its `get_mask()` for the 'center' mask;
               data/util/mask.py `bbox2mask` and `brush_stroke_mask` for the other masks; the
               conditioning image as `InpaintDataset.__getitem__` builds it.
  * forward  : `denoise_fn(cat([y_cond, y_t]), gammas)` and `return_feat=True`; models/loss.py
               `mse_loss` on the masked noise (the official `train_step` loss).
  * sampling : `set_new_noise_schedule` buffers of both phases; `p_mean_variance` and `p_sample`
               at three timesteps; the whole `restoration` loop under a 10-step test schedule.
  * unlearn  : one step of the paper's method ("ours", unlearn.py --fix_decoder 1 --max_loss 0
               --learn_noise 0 --learn_others 0): `Network.forward(..., labels, fix_decoder=True)`
               with `teacher_denoise_fn` a deep copy of the saved weights, loss.backward().
               palette_student.pth holds only the student's perturbed encoder tensors (cond_embed,
               input_blocks, middle_block); the rest of the student is palette_Network.pth.

Monkeypatches (only random draws are replaced; their values are stored):
  * `models.network.torch` is swapped, for the duration of one call, for a proxy of the torch
    module that answers `randn_like` with a seeded draw (recorded), `zeros_like` as torch (recorded),
    `randint(1, T, (b,))` with the fixed timesteps and `rand((b, 1))` with the fixed uniforms of
    the unlearning step; everything else is torch itself. The UNet module is not touched.
Shims (imported by the official files, not used by anything run here; only when missing):
  * `cv2` (data/util/mask.py, used by `random_irregular_mask` only),
  * `pandas` (data/dataset.py, used by `ForgetUncroppingDataset` only).
"""
import argparse
import copy
import importlib
import importlib.machinery
import json
import math
import os
import sys
import types
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

SOURCE_IMAGES = [
    "miniplaces/data/images/val/00000311.jpg",
    "miniplaces/data/images/val/00000312.jpg",
    "miniplaces/data/images/val/00000313.jpg",
    "miniplaces/data/images/val/00000314.jpg",
]
IMG = 32

UNET = OrderedDict(in_channel=6, out_channel=3, inner_channel=32, channel_mults=[1, 1, 2], attn_res=[4],
                   num_head_channels=32, res_blocks=1, dropout=0.0, image_size=IMG)
BETA_SCHEDULE = OrderedDict(
    train=OrderedDict(schedule="linear", n_timestep=2000, linear_start=1e-6, linear_end=0.01),
    test=OrderedDict(schedule="linear", n_timestep=2000, linear_start=1e-4, linear_end=0.09))
SHORT_TEST_SCHEDULE = OrderedDict(schedule="linear", n_timestep=10, linear_start=1e-3, linear_end=0.3)
RESTORE_SAMPLE_NUM = 2
N_MAPS = 7                           # return_feat: the 6 input blocks, then the middle block

MASK_BOX_1 = (4, 6, 12, 10)          # (top, left, height, width)
MASK_BOX_3 = (2, 3, 20, 14)
BRUSH_WIDTH = (3, 6)
FORWARD_GAMMAS = [0.2, 0.6, 0.95, 0.05]
STEP_TS = [1999, 700, 0]
OURS_T = [100, 700, 1300, 1900]
OURS_U = [0.3, 0.5, 0.7, 0.9]
LABELS = [1.0, -1.0, 1.0, -1.0]      # +1 retain, -1 forget (ForgetInpaintDataset's labels)
FORGET_ALPHA = 0.25                  # Network.__init__'s default (unlearn.py overrides it with --forget_alpha)
OURS_FLAGS = OrderedDict(fix_decoder=1, max_loss=0, learn_noise=0, learn_others=0)
STUDENT_REL_STD = 0.02

SEED_WEIGHTS = 0    # Network constructor (official init, then overwritten) and the random weights
SEED_MASK = 3       # np.random.seed before brush_stroke_mask
SEED_COND = 1       # the N(0,1) fill of the hole in y_cond
SEED_NOISE = 2      # the diffusion noise of the forward / unlearning step
SEED_STEP = 4       # the p_sample noise draws
SEED_RESTORE = 5    # the restoration loop's noise draws
SEED_STUDENT = 6    # the student's perturbation

OURS_GRADS = ["input_blocks.0.0.weight", "input_blocks.1.0.in_layers.2.weight", None,  # None: first attention qkv
              "middle_block.1.qkv.weight", "middle_block.2.out_layers.3.weight"]
ENCODER_PREFIXES = ("denoise_fn.cond_embed.", "denoise_fn.input_blocks.", "denoise_fn.middle_block.")
DECODER_PREFIXES = ("denoise_fn.output_blocks.", "denoise_fn.out.")


# ----------------------------------------------------------------------------------------------
# shims and import of the official code
# ----------------------------------------------------------------------------------------------
def import_official(official_dir):
    official_dir = os.path.abspath(official_dir)
    for f in ("models/network.py", "models/guided_diffusion_modules/unet.py", "models/loss.py",
              "data/dataset.py", "data/util/mask.py", "unlearn.py", "core/base_network.py"):
        if not os.path.isfile(os.path.join(official_dir, f)):
            sys.exit(f"--official {official_dir}: {f} not found (need a checkout of the i2i branch)")
    import torchvision  # noqa: F401  (before the shims: torch._dynamo probes optional modules by spec)
    for name in ("cv2", "pandas"):
        try:
            importlib.import_module(name)
        except ImportError:
            shim = types.ModuleType(name)  # imported at module level, never called here
            shim.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = shim
    sys.path.insert(0, official_dir)
    for name in list(sys.modules):  # an unrelated `models`/`data`/`core` package must not shadow them
        if name.split(".")[0] in ("models", "data", "core"):
            del sys.modules[name]
    network = importlib.import_module("models.network")
    loss = importlib.import_module("models.loss")
    dataset = importlib.import_module("data.dataset")
    mask = importlib.import_module("data.util.mask")
    unet = importlib.import_module("models.guided_diffusion_modules.unet")
    for m in (network, loss, dataset, mask, unet):
        assert os.path.abspath(m.__file__).startswith(official_dir), m.__file__
    # the flags of "ours" as unlearn.py sets them on the network
    src = open(os.path.join(official_dir, "unlearn.py")).read()
    for flag in ("forget_alpha", "max_loss", "learn_noise", "learn_others"):
        assert f"networks[0].{flag} = opt['{flag}']" in src, flag
    assert "teacher_denoise_fn = copy.deepcopy(model.netG.module.denoise_fn)" in src
    return network, loss, dataset, mask, unet


class TorchProxy:
    """Stands in for the `torch` module inside models/network.py during one call."""

    def __init__(self, randn_gen=None, randint_value=None, rand_value=None):
        self.randn_gen = randn_gen
        self.randint_value = randint_value
        self.rand_value = rand_value
        self.draws = []  # (kind, tensor) in call order

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn_like(self, x):
        assert self.randn_gen is not None, "unexpected torch.randn_like"
        v = torch.randn(x.shape, generator=self.randn_gen, dtype=x.dtype)
        self.draws.append(("randn_like", v.clone()))
        return v

    def zeros_like(self, x):
        v = torch.zeros_like(x)
        self.draws.append(("zeros_like", v.clone()))
        return v

    def randint(self, low, high, size, device=None):
        assert self.randint_value is not None, "unexpected torch.randint"
        assert low == 1 and tuple(size) == tuple(self.randint_value.shape), (low, high, size)
        assert bool(((self.randint_value >= low) & (self.randint_value < high)).all())
        v = self.randint_value.clone()
        self.draws.append(("randint", v.clone()))
        return v

    def rand(self, size, device=None):
        assert self.rand_value is not None, "unexpected torch.rand"
        assert tuple(size) == tuple(self.rand_value.shape), size
        v = self.rand_value.clone()
        self.draws.append(("rand", v.clone()))
        return v


class patched_torch:
    def __init__(self, network_module, proxy):
        self.m, self.proxy = network_module, proxy

    def __enter__(self):
        self.m.torch = self.proxy
        return self.proxy

    def __exit__(self, *exc):
        self.m.torch = torch


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------
def randomise(net, seed):
    """Every parameter from a seeded generator, in named_modules() order; nothing is zero."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for mod_name, mod in net.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                full = f"{mod_name}.{pname}"
                r = torch.randn(p.shape, generator=g)
                if isinstance(mod, nn.GroupNorm):
                    v = 1.0 + 0.1 * r if pname == "weight" else 0.1 * r
                elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    v = 0.5 / math.sqrt(p[0].numel()) * r if pname == "weight" else 0.1 * r
                else:
                    raise RuntimeError(f"unhandled parameter {full} in {type(mod).__name__}")
                p.copy_(v)
                n += 1
    assert n == len(list(net.parameters()))
    for name, p in net.named_parameters():
        assert bool((p != 0).all()), name
    return n


def plain_state_dict(net):
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in net.state_dict().items())


def build_network(network_mod):
    torch.manual_seed(SEED_WEIGHTS)
    return network_mod.Network(unet=json.loads(json.dumps(UNET)),
                               beta_schedule=json.loads(json.dumps(BETA_SCHEDULE)),
                               module_name="guided_diffusion")


# ----------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", default=os.environ.get("I2I_PALETTE_DIR"),
                    help="checkout of the i2i branch of jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models "
                         "(default: $I2I_PALETTE_DIR)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    if not args.official:
        sys.exit("pass --official DIR or set I2I_PALETTE_DIR (git clone -b i2i "
                 "https://github.com/jpmorganchase/i2i_Palette-Image-to-Image-Diffusion-Models)")
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    network_mod, loss_mod, dataset_mod, mask_mod, unet_mod = import_official(args.official)
    out_dir = os.path.join(args.out, "palette_ref")
    os.makedirs(out_dir, exist_ok=True)
    t = OrderedDict()

    # ---- 1. network: official constructor, random weights, train schedule, saved and reloaded ---
    net = build_network(network_mod)
    n_params = randomise(net, SEED_WEIGHTS)
    net.set_new_noise_schedule(device=cpu, phase="train")
    sd = plain_state_dict(net)
    net_path = os.path.join(out_dir, "palette_Network.pth")
    torch.save(sd, net_path)
    net = build_network(network_mod)
    net.set_new_noise_schedule(device=cpu, phase="train")
    net.load_state_dict(torch.load(net_path, map_location="cpu"))  # strict
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k
    net.eval()
    fn = net.denoise_fn
    assert fn.dtype == torch.float32

    # ---- 2. data ---------------------------------------------------------------------------------
    val_dir = os.path.join(args.data, os.path.dirname(SOURCE_IMAGES[0]))
    if not os.path.isdir(val_dir):
        sys.exit(f"{val_dir} not found (pass --data DIR, the shared data folder)")
    ds = dataset_mod.InpaintDataset(data_root=val_dir, mask_config={"mask_mode": "center"},
                                    image_size=[IMG, IMG])
    y0 = torch.stack([ds.tfs(ds.loader(os.path.join(args.data, rel))) for rel in SOURCE_IMAGES])
    masks = [ds.get_mask(),                                                    # 'center': (8, 8, 16, 16)
             torch.from_numpy(mask_mod.bbox2mask((IMG, IMG), MASK_BOX_1)).permute(2, 0, 1)]
    np.random.seed(SEED_MASK)
    masks.append(torch.from_numpy(mask_mod.brush_stroke_mask((IMG, IMG), brush_width=BRUSH_WIDTH)).permute(2, 0, 1))
    masks.append(torch.from_numpy(mask_mod.bbox2mask((IMG, IMG), MASK_BOX_3)).permute(2, 0, 1))
    mask = torch.stack(masks).float()
    assert torch.equal(mask[0, 0, 8:24, 8:24], torch.ones(16, 16)) and mask[0].sum() == 256
    for i in range(4):
        assert 0 < mask[i].sum() < IMG * IMG, (i, mask[i].sum())
    cond_noise = torch.randn(y0.shape, generator=torch.Generator().manual_seed(SEED_COND))
    y_cond = y0 * (1. - mask) + mask * cond_noise  # InpaintDataset.__getitem__
    t.update(y0=y0, mask=mask, cond_noise=cond_noise, y_cond=y_cond)

    # ---- 3. forward parity -------------------------------------------------------------------
    gammas = torch.tensor(FORWARD_GAMMAS, dtype=torch.float32)
    noise = torch.randn(y0.shape, generator=torch.Generator().manual_seed(SEED_NOISE))
    g4 = gammas.view(-1, 1, 1, 1)
    y_t = (g4.sqrt() * y0 + (1 - g4).sqrt() * noise) * mask + (1. - mask) * y0
    x_in = torch.cat([y_cond, y_t], dim=1)
    with torch.no_grad():
        eps = fn(x_in, gammas)
        feats = fn(x_in, gammas, return_feat=True)
        train_loss = loss_mod.mse_loss(mask * noise, mask * eps)
    n_maps = len(feats)
    assert n_maps == len(fn.input_blocks) + 1 == N_MAPS, n_maps
    t.update(forward_gammas=gammas, noise=noise, y_t=y_t, eps=eps, train_loss=train_loss.reshape(()))
    for i, f in enumerate(feats):
        t[f"feat_{i:02d}"] = f

    # ---- 4. schedules ----------------------------------------------------------------------------
    t["schedule_train_gammas"] = net.gammas.clone()
    net.set_new_noise_schedule(device=cpu, phase="test")
    t["schedule_test_gammas"] = net.gammas.clone()
    for b in ("posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"):
        t[b] = getattr(net, b).clone()
    assert net.num_timesteps == 2000

    # ---- 5. ancestral steps (test schedule) -------------------------------------------------------
    step_gen = torch.Generator().manual_seed(SEED_STEP)
    for ti in STEP_TS:
        tt = torch.full((y0.shape[0],), ti, dtype=torch.long)
        with torch.no_grad():
            mean, logvar = net.p_mean_variance(y_t=y_t, t=tt, clip_denoised=True, y_cond=y_cond)
            with patched_torch(network_mod, TorchProxy(randn_gen=step_gen)) as px:
                y_prev = net.p_sample(y_t, tt, y_cond=y_cond)
        assert len(px.draws) == 1 and px.draws[0][0] == ("randn_like" if ti > 0 else "zeros_like"), px.draws
        step_noise = px.draws[0][1]
        assert torch.allclose(y_prev, mean + step_noise * (0.5 * logvar).exp(), atol=1e-6, rtol=0)
        t[f"p_mean_t{ti}"] = mean
        t[f"p_logvar_t{ti}"] = logvar
        t[f"step_noise_t{ti}"] = step_noise
        t[f"y_prev_t{ti}"] = y_prev

    # ---- 6. a whole short restoration loop ---------------------------------------------------------
    net.beta_schedule["test"] = dict(SHORT_TEST_SCHEDULE)
    net.set_new_noise_schedule(device=cpu, phase="test")
    assert net.num_timesteps == SHORT_TEST_SCHEDULE["n_timestep"]
    t["restore_gammas"] = net.gammas.clone()
    with torch.no_grad(), patched_torch(network_mod, TorchProxy(
            randn_gen=torch.Generator().manual_seed(SEED_RESTORE))) as px:
        restore_out, _ret_arr = net.restoration(y_cond, y_t=y_cond, y_0=y0, mask=mask, sample_num=RESTORE_SAMPLE_NUM)
    kinds = [k for k, _ in px.draws]
    assert kinds == ["randn_like"] * (net.num_timesteps - 1) + ["zeros_like"], kinds
    t["restore_noise"] = torch.stack([v for _, v in px.draws])
    t["restore_out"] = restore_out
    net.beta_schedule["test"] = dict(BETA_SCHEDULE["test"])
    net.set_new_noise_schedule(device=cpu, phase="test")
    assert torch.equal(net.gammas, t["schedule_test_gammas"])
    net.set_new_noise_schedule(device=cpu, phase="train")
    assert torch.equal(net.gammas, t["schedule_train_gammas"])

    # ---- 7. one "ours" unlearning step (train schedule) ------------------------------------------
    # unlearn.py: networks[0].forget_alpha / max_loss / learn_noise / learn_others = the flags;
    # after loading the checkpoint, teacher_denoise_fn = deepcopy(denoise_fn); model.unlearn_fix_decoder()
    # -> unlearn_step_fix_decoder: netG.train(); loss = netG(gt, cond, mask=mask, labels=labels, fix_decoder=True)
    net.forget_alpha = FORGET_ALPHA
    net.max_loss = OURS_FLAGS["max_loss"]
    net.learn_noise = OURS_FLAGS["learn_noise"]
    net.learn_others = OURS_FLAGS["learn_others"]
    teacher = copy.deepcopy(net.denoise_fn)  # the saved weights
    teacher.eval()
    teacher.requires_grad_(False)
    g = torch.Generator().manual_seed(SEED_STUDENT)
    perturbed = []
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(ENCODER_PREFIXES):
                p.add_(STUDENT_REL_STD * (p.std() + 1e-3) * torch.randn(p.shape, generator=g))
                perturbed.append(name)
            else:
                assert name.startswith(DECODER_PREFIXES), name
    full_student_sd = plain_state_dict(net)
    assert list(full_student_sd) == list(sd)
    # only the perturbed encoder tensors are stored; every other entry equals palette_Network.pth
    student_sd = OrderedDict((k, v) for k, v in full_student_sd.items() if k.startswith(ENCODER_PREFIXES))
    assert list(student_sd) == perturbed
    for k, v in full_student_sd.items():
        assert torch.equal(v, sd[k]) != (k in student_sd), k
    student_path = os.path.join(out_dir, "palette_student.pth")
    torch.save(student_sd, student_path)
    merged = dict(torch.load(net_path, map_location="cpu"))
    merged.update(torch.load(student_path, map_location="cpu"))
    assert list(merged) == list(full_student_sd)
    for k, v in full_student_sd.items():
        assert torch.equal(merged[k], v), k
    net.teacher_denoise_fn = teacher  # registered as a submodule, as in unlearn.py
    net.train()
    net.teacher_denoise_fn.eval()  # no difference: dropout 0, GroupNorm has no running statistics

    labels = torch.tensor(LABELS, dtype=torch.float32)
    ours_t = torch.tensor(OURS_T, dtype=torch.long)
    ours_u = torch.tensor(OURS_U, dtype=torch.float32).view(-1, 1)
    # the official formula (Network.forward), from the train schedule
    g_prev = net.gammas.gather(-1, ours_t - 1).reshape(-1, 1)
    g_cur = net.gammas.gather(-1, ours_t).reshape(-1, 1)
    sample_gammas = ((g_cur - g_prev) * ours_u + g_prev).view(-1)

    seen = {"student": [], "teacher": []}
    hooks = [net.denoise_fn.register_forward_pre_hook(
                 lambda m, a, kw: seen["student"].append((a[0].detach().clone(), a[1].detach().clone(), kw)),
                 with_kwargs=True),
             net.denoise_fn.register_forward_hook(
                 lambda m, a, kw, out: seen["student"].append([o.detach().clone() for o in out]), with_kwargs=True),
             teacher.register_forward_pre_hook(
                 lambda m, a, kw: seen["teacher"].append((a[0].detach().clone(), a[1].detach().clone(), kw)),
                 with_kwargs=True),
             teacher.register_forward_hook(
                 lambda m, a, kw, out: seen["teacher"].append([o.detach().clone() for o in out]), with_kwargs=True)]
    net.zero_grad(set_to_none=True)
    with patched_torch(network_mod, TorchProxy(randint_value=ours_t, rand_value=ours_u)) as px:
        loss = net(y0, y_cond, mask=mask, noise=noise, labels=labels, fix_decoder=True)
    loss.backward()
    for h in hooks:
        h.remove()
    assert [k for k, _ in px.draws] == ["randint", "rand"], px.draws
    (s_in, s_g, s_kw), s_feats = seen["student"]
    (t_in, t_g, t_kw), t_feats = seen["teacher"]
    assert s_kw == {"return_feat": True} and t_kw == {"return_feat": True}
    assert torch.equal(s_g.view(-1), sample_gammas) and torch.equal(t_g.view(-1), sample_gammas)
    # the inputs as the official forward builds them (q_sample with the labels)
    sg = sample_gammas.view(-1, 1, 1, 1)
    l4 = labels.view(-1, 1, 1, 1)
    y_noisy = sg.sqrt() * y0 * (l4 + 1.0) * 0.5 + (1 - sg).sqrt() * noise + (1 - (1 - sg).sqrt()) * noise * (1.0 - l4) * 0.5
    y_noise_original = sg.sqrt() * y0 + (1 - sg).sqrt() * noise
    student_in = torch.cat([y_cond, y_noise_original * mask + (1. - mask) * y0], dim=1)
    teacher_in = torch.cat([y_cond, y_noisy * mask + (1. - mask) * y0], dim=1)
    assert torch.equal(s_in, student_in) and torch.equal(t_in, teacher_in)
    # forget rows of the teacher input: the noise itself in the hole (up to rounding)
    fr = labels < 0
    assert torch.allclose(teacher_in[fr, 3:] * mask[fr], noise[fr] * mask[fr], atol=1e-6)
    # the loss term by term (Network.weighted_mse_loss, summed over the feature maps)
    wr, wf = (l4 + 1.0) * 0.5, (1.0 - l4) * 0.5
    retain_terms = torch.stack([F.mse_loss(s * wr, tf * wr) for s, tf in zip(s_feats, t_feats)]).detach()
    forget_terms = torch.stack([F.mse_loss(s * wf, tf * wf) for s, tf in zip(s_feats, t_feats)]).detach()
    recomputed = (retain_terms + FORGET_ALPHA * forget_terms).sum()
    assert torch.allclose(recomputed, loss.detach(), rtol=1e-5, atol=0), (recomputed, loss)
    assert len(s_feats) == n_maps

    named = dict(net.denoise_fn.named_parameters())
    first_attn = next(k for k in named if k.startswith("input_blocks.") and k.endswith(".qkv.weight"))
    grad_names = [n if n is not None else first_attn for n in OURS_GRADS]
    for name, p in net.named_parameters():
        if name.startswith(DECODER_PREFIXES) or name.startswith("teacher_denoise_fn."):
            assert p.grad is None or not bool(p.grad.any()), name
        else:
            assert p.grad is not None and bool(p.grad.any()), name
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters() if p.grad is not None)).float()
    t.update(labels=labels, ours_t=ours_t, ours_u=ours_u.view(-1), ours_sample_gammas=sample_gammas,
             ours_student_in=student_in, ours_teacher_in=teacher_in, ours_loss=loss.detach().reshape(()),
             ours_alpha=torch.tensor(FORGET_ALPHA, dtype=torch.float32),
             ours_retain_terms=retain_terms, ours_forget_terms=forget_terms, ours_grad_norm=grad_norm.reshape(()))
    for n in grad_names:
        t[f"ours_grad.{n}"] = named[n].grad.detach().clone()

    # ---- write ----------------------------------------------------------------------------------
    t = OrderedDict((k, (v.detach().float() if v.dtype.is_floating_point else v.detach().long()).contiguous())
                    for k, v in t.items())
    save_file(dict(t), os.path.join(out_dir, "case.safetensors"), metadata={"format": "pt"})

    config = OrderedDict(
        source="official i2i_Palette-Image-to-Image-Diffusion-Models (branch i2i): models/network.py, "
               "models/guided_diffusion_modules/, models/loss.py, data/dataset.py, data/util/mask.py, unlearn.py, "
               "run by tools/reference/palette_reference.py with random weights",
        unet=UNET,
        beta_schedule=BETA_SCHEDULE,
        module_name="guided_diffusion",
        unet_defaults_in_effect=OrderedDict(
            use_scale_shift_norm=True, resblock_updown=True, conv_resample=True, use_checkpoint=False,
            use_new_attention_order=False, num_heads=1, group_norm_groups=32,
            group_norm_eps=fn.out[0].eps, attention_heads_per_block=64 // UNET["num_head_channels"],
            gamma_embedding_max_period=10000, cond_embed_dim=4 * UNET["inner_channel"]),
        encoder_features=n_maps,
        feature_shapes=[list(f.shape) for f in feats],
        first_attention_qkv=first_attn,
        parameters=n_params,
        weights=("seeded: Conv/Linear weights N(0, 0.5/sqrt(fan_in)), biases N(0, 0.1), GroupNorm weights "
                 "1 + N(0, 0.1), biases N(0, 0.1); no parameter is zero"),
        checkpoint="torch.save(Network.state_dict()) after set_new_noise_schedule(phase='train'): denoise_fn.* "
                   "and the buffers gammas, sqrt_recip_gammas, sqrt_recipm1_gammas, posterior_log_variance_clipped, "
                   "posterior_mean_coef1, posterior_mean_coef2 (train schedule)",
        source_images=SOURCE_IMAGES,
        image_preprocessing="InpaintDataset.tfs: PIL convert('RGB'), torchvision Resize((32, 32)) (bilinear, "
                            "antialiased PIL resize), ToTensor, Normalize(0.5, 0.5) -> [-1, 1]",
        masks=OrderedDict([
            ("0", "InpaintDataset 'center': bbox2mask((32,32), (8, 8, 16, 16)) rows/cols 8..24"),
            ("1", f"bbox2mask((32,32), {MASK_BOX_1}) (top, left, height, width)"),
            ("2", f"np.random.seed({SEED_MASK}); brush_stroke_mask((32,32), brush_width={BRUSH_WIDTH})"),
            ("3", f"bbox2mask((32,32), {MASK_BOX_3})")]),
        mask_pixels=[int(m.sum()) for m in mask],
        forward_gammas=FORWARD_GAMMAS,
        step_timesteps=STEP_TS,
        restoration=OrderedDict(test_schedule=SHORT_TEST_SCHEDULE, sample_num=RESTORE_SAMPLE_NUM,
                                y_t="y_cond"),
        ours=OrderedDict(
            flags=OURS_FLAGS, forget_alpha=FORGET_ALPHA,
            forget_alpha_note="Network.__init__ sets 0.25; unlearn.py overwrites it with --forget_alpha (argparse "
                              "default 0.1, the README's example command passes 0.1)",
            labels=LABELS, t=OURS_T, u=OURS_U,
            sample_gammas="(gammas[t] - gammas[t-1]) * u + gammas[t-1], train schedule, float32",
            student=f"palette_Network.pth with every encoder parameter (cond_embed, input_blocks, middle_block) "
                    f"+ N(0, {STUDENT_REL_STD} * (param.std() + 1e-3)), seed {SEED_STUDENT}; palette_student.pth "
                    f"holds only these perturbed encoder tensors, the rest of the student equals palette_Network.pth",
            teacher="copy.deepcopy of palette_Network.pth's denoise_fn, eval, frozen",
            perturbed_parameters=len(perturbed), student_file_keys=len(student_sd)),
        seeds=OrderedDict(weights=SEED_WEIGHTS, brush_mask_numpy=SEED_MASK, cond_noise=SEED_COND,
                          noise=SEED_NOISE, step_noise=SEED_STEP, restore_noise=SEED_RESTORE, student=SEED_STUDENT),
        versions=OrderedDict(torch=torch.__version__, numpy=np.__version__),
    )
    import torchvision
    import PIL
    config["versions"].update(torchvision=torchvision.__version__, pillow=PIL.__version__)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")

    total = 0
    for f in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, f))
        total += size
        print(f"wrote {os.path.join(out_dir, f)} ({size} bytes)")
    print(f"  total {total / 1e6:.2f} MB; {n_params} parameters, {len(perturbed)} perturbed in the student")
    for k, v in t.items():
        s = f"max|.|={v.abs().max().item():.6g}" if v.dtype == torch.float32 else f"min={v.min().item()} max={v.max().item()}"
        print(f"  {k:48s} {str(tuple(v.shape)):20s} {str(v.dtype):14s} {s}")
    print(f"  train_loss={t['train_loss'].item():.6g} ours_loss={t['ours_loss'].item():.6g} "
          f"retain={t['ours_retain_terms'].sum().item():.6g} forget={t['ours_forget_terms'].sum().item():.6g} "
          f"grad_norm={t['ours_grad_norm'].item():.6g} mask pixels {config['mask_pixels']}")


if __name__ == "__main__":
    main()
