#!/usr/bin/env python3
"""Parity fixtures from the OFFICIAL MAGE code of the paper (the `i2i` branch of
github.com/jpmorganchase/i2i_mage), run with small random weights on real photographs.

Writes tests/fixtures/mage_ref/: vqgan.ckpt, mage.pth, config.json, case.safetensors.
Deterministic, CPU only, no downloads. The official code is imported from `--official DIR`
(default: the environment variable I2I_MAGE_DIR), a checkout of
    git clone -b i2i https://github.com/jpmorganchase/i2i_mage
and never copied into this repository.

Usage: python tools/reference/mage_reference.py --official DIR [--data DIR] [--out DIR]

What runs where (every computation is the official module unless said otherwise):
  * tokenizer  : taming/models/vqgan.py `VQModel` (Encoder / Decoder of
                 taming/modules/diffusionmodules/model.py, `VectorQuantizer2` of
                 taming/modules/vqvae/quantize.py), built standalone with the tiny ddconfig
                 below, randomised, saved as vqgan.ckpt, then loaded back by the official
                 `VQModel.init_from_ckpt` (strict) inside the MAGE constructor.
  * MAGE       : models_mage.py `MaskedGenerativeEncoderViT` with the tiny sizes below
                 (norm_layer = LayerNorm(eps=1e-6), as `mage_vit_base_patch16`), randomised,
                 saved as mage.pth ({"model": full state_dict incl. vqgan.*, "epoch": 0}, as the
                 released mage-vitb-1600.pth) and re-loaded strictly (as util/misc.load_model).
  * inpainting : testpaint.py `test_single_inpaint` pixel hole and token mask (centre,
                 mask_ratio 0.5, token margin 1) re-stated for 32 px / 8x8 tokens; the first
                 forward of `inpaint_image_mage_multisteps` (token_emb -> blocks -> norm ->
                 forward_decoder) with the official modules; the 20-step MaskGIT loop
                 re-implemented here (it is a short loop over official modules) with argmax
                 instead of Categorical sampling and no Gumbel noise, every other detail kept.
  * training   : models_mage.forward_encoder's random masking branch (scipy truncnorm ratio,
                 num_dropped = ceil(64 * 0.5)) under fixed numpy / torch seeds; the "ours" step
                 of engine_unlearn.train_one_epoch with the official `compute_loss`; the Max Loss
                 step of engine_baseline.train_one_epoch_max_full_model_loss, i.e.
                 model(samples, labels=labels, forget_alpha=...) -> forward_weighted_loss.

Shims (nothing that the computation uses is replaced):
  * `pytorch_lightning`: vqgan.py subclasses pl.LightningModule only for training plumbing; a fake
    module whose LightningModule is torch.nn.Module is put in sys.modules.
  * `torch._six`: util/misc.py (imported by engine_unlearn.py) does `from torch._six import inf`,
    a module removed from torch 2; a fake module with inf = math.inf is put in sys.modules.
  * `torch.Tensor.cuda`: models_mage.forward_encoder calls `.cuda()`; without a GPU it is made the
    identity (the tensors stay on the CPU).
  * `OmegaConf.load('config/vqgan.yaml')` in the MAGE constructor (a path relative to the working
    directory, holding the 256 px config): models_mage's OmegaConf is replaced by a loader that
    answers that one path with the tiny config below in the same structure (checked against the
    official yaml's keys).
  * timm is the real package (MAGE's Block uses timm's Mlp: mlp.fc1, GELU, mlp.fc2).
Deliberate differences from a training run, so that the fixture is deterministic:
  * the student runs in eval mode: the only stochastic layer is BertEmbeddings' dropout(0.1)
    (all other dropouts and drop_path are 0), which the official train mode applies;
  * no torch.cuda.amp autocast / GradScaler / grad clipping / optimizer step: the stored
    gradients are the raw fp32 gradients of the loss (accum_iter = 1);
  * the noise images of "ours" are drawn with a fixed seed (stored as `noise_images`);
  * the further students (the "ours_b" step, Max Loss) are deep copies of the teacher whose
    masking-ratio distribution is re-attached to numpy's global generator (`fresh_copy`), so that the
    seeds give every random-masking call the same masks (all calls are checked to agree);
  * "ours_b": at step one the student equals the teacher, so the retain term of "ours" is exactly 0;
    the step is repeated with a student whose final encoder norm (norm.weight/bias, stored) differs.

Inputs: three miniplaces validation photos from the shared data folder (`--data`), PIL bicubic to
32x32, in [0,1]; labels 5 (forget, < 100) and 150, 160 (retain).

Weights: every trainable parameter is overwritten from a seeded generator, in named_parameters()
order: GroupNorm/LayerNorm weights 1 + 0.2*randn, their biases 0.2*randn, other biases 0.1*randn,
Linear/Conv weights randn / sqrt(fan_in), Embedding tables and the free parameters (cls_token,
mask_token, decoder_pos_embed_learned, mlm_layer.bias) 0.2*randn. The fixed sin-cos tables
(pos_embed, decoder_pos_embed; requires_grad False) keep the official init. The VQ codebook is
then re-drawn so the quantiser uses many codes: 64 distinct encoder output vectors of the
images (original and masked) plus 0.1 * (per-channel std) * randn.
"""
import argparse
import copy
import importlib
import json
import math
import os
import sys
import types
import warnings
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGENET_MEAN = (0.485, 0.456, 0.406)

SOURCE_IMAGES = [
    "miniplaces/data/images/val/00000301.jpg",
    "miniplaces/data/images/val/00000302.jpg",
    "miniplaces/data/images/val/00000303.jpg",
]
LABELS = [5, 150, 160]  # < 100: forget sample, >= 100: retain samples (the code's threshold)
IMG = 32

VQ_N_EMBED = 64
VQ_EMBED_DIM = 32
VQ_DDCONFIG = dict(double_z=False, z_channels=32, resolution=32, in_channels=3, out_ch=3, ch=32,
                   ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[16], dropout=0.0)
MAGE_KW = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
               decoder_embed_dim=48, decoder_depth=2, decoder_num_heads=3, mlp_ratio=4.0)
LAYER_NORM_EPS = 1e-6
MASK_RATIO_KW = dict(mask_ratio_min=0.5, mask_ratio_max=1.0, mask_ratio_mu=0.55, mask_ratio_std=0.25)

INPAINT_MASK_RATIO = 0.5   # testpaint.py --mask_ratio for the 'center' mode
LATENT_MARGIN = 1          # testpaint.py latent_margin
NUM_ITER = 20              # test_single_inpaint -> inpaint_image_mage_multisteps(num_iter=20,
CHOICE_TEMPERATURE = 6.0   #   choice_temperature=6.0); unused here (no Gumbel noise)
CONFIDENCE_OF_KNOWN_TOKENS = 1e20
RETAIN_ALPHA = 1.0
FORGET_ALPHA = 0.25
ACCUM_ITER = 1

SEED_VQ = 0        # tokenizer weights
# The two seeds below were picked (codebook among 1..40, MAGE among 2..25) for the widest decision
# margins, so that a port's float32 rounding does not flip a discrete choice: the smallest gap between
# the best and second-best codebook distance over all quantised vectors, and, in the greedy loop,
# the smallest top-1/top-2 logit gap at the unknown tokens and the smallest gap at the re-masking
# cut-off (written to config.json, checked against MIN_MARGIN below).
SEED_CODEBOOK = 4  # codebook rows
SEED_MAGE = 7       # MAGE constructor (official init) and then its random weights
SEED_MASK = 3      # np.random.seed + torch.manual_seed before the random masking branch
SEED_NOISE = 4     # torch.manual_seed before the noise images of "ours"
SEED_STUDENT_B = 5  # perturbation of the second student's final encoder norm
MIN_MARGIN = 1e-3

OURS_GRADS = ["token_emb.word_embeddings.weight", "token_emb.LayerNorm.weight",
              "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "norm.weight"]
MAXLOSS_GRADS = OURS_GRADS + ["decoder_blocks.0.attn.proj.weight", "mlm_layer.fc.weight"]


# ----------------------------------------------------------------------------------------------
# shims and import of the official code
# ----------------------------------------------------------------------------------------------
def import_official(official_dir):
    official_dir = os.path.abspath(official_dir)
    for f in ("models_mage.py", "testpaint.py", "engine_unlearn.py", "engine_baseline.py",
              "config/vqgan.yaml", "taming/models/vqgan.py"):
        if not os.path.isfile(os.path.join(official_dir, f)):
            sys.exit(f"--official {official_dir}: {f} not found (need a checkout of the i2i branch)")
    if "pytorch_lightning" not in sys.modules:
        pl = types.ModuleType("pytorch_lightning")
        pl.LightningModule = nn.Module
        sys.modules["pytorch_lightning"] = pl
    try:
        importlib.import_module("torch._six")
    except ImportError:
        six = types.ModuleType("torch._six")
        six.inf = math.inf
        sys.modules["torch._six"] = six
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*autocast.*")
    sys.path.insert(0, official_dir)
    import models_mage
    import engine_unlearn
    import engine_baseline  # noqa: F401  (imported to check it loads; the Max Loss path is in models_mage)
    from taming.models.vqgan import VQModel
    for m in (models_mage, engine_unlearn):
        assert os.path.abspath(m.__file__).startswith(official_dir), m.__file__

    from omegaconf import OmegaConf
    real = OmegaConf.load(os.path.join(official_dir, "config", "vqgan.yaml"))
    tiny = OmegaConf.create({"model": {"target": real.model.target, "params": {
        "embed_dim": VQ_EMBED_DIM, "n_embed": VQ_N_EMBED, "ddconfig": dict(VQ_DDCONFIG)}}})
    assert set(real.model.params.keys()) == set(tiny.model.params.keys())
    assert set(real.model.params.ddconfig.keys()) == set(tiny.model.params.ddconfig.keys())

    class TinyConfigLoader:
        @staticmethod
        def load(path):
            assert os.path.normpath(path) == os.path.join("config", "vqgan.yaml"), path
            return tiny

    models_mage.OmegaConf = TinyConfigLoader
    return models_mage, engine_unlearn, VQModel


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------
def randomise(model, seed):
    """Overwrite every trainable parameter (requires_grad) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                full = f"{mod_name}.{pname}" if mod_name else pname
                r = torch.randn(p.shape, generator=g)
                if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
                    v = 1.0 + 0.2 * r if pname == "weight" else 0.2 * r
                elif isinstance(mod, (nn.Linear, nn.Conv2d)):
                    v = r / math.sqrt(p[0].numel()) if pname == "weight" else 0.1 * r
                elif isinstance(mod, nn.Embedding) or pname in (
                        "cls_token", "mask_token", "decoder_pos_embed_learned", "bias"):
                    v = 0.2 * r
                else:
                    raise RuntimeError(f"unhandled parameter {full} in {type(mod).__name__}")
                p.copy_(v)
                n += 1
    return n


def load_images(data_dir):
    """RGB, PIL bicubic to 32x32, uint8 / 255 in float32, NCHW (as transforms.ToTensor)."""
    out = []
    for rel in SOURCE_IMAGES:
        path = os.path.join(data_dir, rel)
        if not os.path.isfile(path):
            sys.exit(f"image not found: {path} (pass --data DIR, the shared data folder)")
        img = Image.open(path).convert("RGB").resize((IMG, IMG), resample=Image.BICUBIC)
        arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out).contiguous()


def testpaint_center_masks(images, grid):
    """testpaint.py test_single_inpaint, mode 'center', at IMG px with grid x grid tokens (the
    official code hard-codes 16 px per token and 256 tokens; here IMG // grid and grid * grid)."""
    imagesize = images.shape[-1]
    px = imagesize // grid
    mask_left = int(imagesize * 0.5 * (1 - INPAINT_MASK_RATIO))
    mask_width = int(imagesize * INPAINT_MASK_RATIO)
    mask_top = int(imagesize * 0.5 * (1 - INPAINT_MASK_RATIO))
    mask_height = int(imagesize * INPAINT_MASK_RATIO)
    images_masked = images.clone()
    images_masked[:, :, mask_left:mask_left + mask_width, mask_top:mask_top + mask_height] = 0
    for c in range(3):
        images_masked[:, c, mask_left:mask_left + mask_width, mask_top:mask_top + mask_height] = IMAGENET_MEAN[c]
    token_all_mask = torch.zeros(images.size(0), grid, grid)
    t_left = max(0, mask_left // px - LATENT_MARGIN)
    t_right = min(grid * grid, (mask_left + mask_width) // px + LATENT_MARGIN)
    t_top = max(0, mask_top // px - LATENT_MARGIN)
    t_bottom = min(grid * grid, (mask_top + mask_height) // px + LATENT_MARGIN)
    token_all_mask[:, t_left:t_right, t_top:t_bottom] = 1
    info = {"pixel_hole_rows": [mask_left, mask_left + mask_width],
            "pixel_hole_cols": [mask_top, mask_top + mask_height],
            "token_mask_rows": [t_left, t_right], "token_mask_cols": [t_top, t_bottom]}
    return images_masked, token_all_mask.reshape(images.size(0), -1), info


def vq_min_gap(vq, x):
    """Smallest gap between the best and second-best codebook distance (official formula)."""
    with torch.no_grad():
        z = vq.encoder(x).permute(0, 2, 3, 1).reshape(-1, VQ_EMBED_DIM)
        e = vq.quantize.embedding.weight
        d = (z ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * z @ e.t()
        s = d.sort(dim=1).values
        return float((s[:, 1] - s[:, 0]).min()), float(s[:, 0].abs().max())


# ----------------------------------------------------------------------------------------------
# the MaskGIT loop of testpaint.inpaint_image_mage_multisteps, greedy
# ----------------------------------------------------------------------------------------------
def greedy_inpaint(model, images, token_all_mask, grid):
    codebook_size = model.codebook_size
    mask_token_id = model.mask_token_label
    unknown_number_in_the_beginning = grid * grid  # official: 256 = all tokens of a 256 px image
    bsz = images.size(0)
    with torch.no_grad():
        z_q, _, token_tuple = model.vqgan.encode(images)
        _, _, token_indices = token_tuple
        token_indices = token_indices.reshape(z_q.size(0), -1)
        token_indices[token_all_mask.nonzero(as_tuple=True)] = mask_token_id
        mask_rate = token_all_mask.sum() / np.prod(token_all_mask.shape)
        steps = []
        min_argmax_gap = math.inf
        min_cutoff_gap = math.inf
        first = None
        for step in range(NUM_ITER):
            ratio = 1. * (step + 1) / NUM_ITER
            mask_ratio = np.cos(math.pi / 2. * ratio)
            if mask_ratio >= mask_rate:
                continue
            cur_ids = token_indices.clone().long()
            token_indices = torch.cat([torch.zeros(token_indices.size(0), 1), token_indices], dim=1)
            token_indices[:, 0] = model.fake_class_label
            token_indices = token_indices.long()
            token_all_mask_s = token_indices == mask_token_id
            token_drop_mask = torch.zeros_like(token_indices)
            x = model.token_emb(token_indices)
            for blk in model.blocks:
                x = blk(x)
            x = model.norm(x)
            logits = model.forward_decoder(x, token_drop_mask, token_all_mask_s)
            if first is None:
                first = (x.clone(), logits.clone())
            logits = logits[:, 1:, :codebook_size]
            # official: Categorical(logits=logits).sample(); here the argmax
            sampled_ids = logits.argmax(dim=-1)
            unknown_map = cur_ids == mask_token_id
            top2 = logits.topk(2, dim=-1).values
            min_argmax_gap = min(min_argmax_gap, float((top2[..., 0] - top2[..., 1])[unknown_map].min()))
            sampled_ids = torch.where(unknown_map, sampled_ids, cur_ids)
            probs = torch.nn.functional.softmax(logits, dim=-1)
            selected_probs = torch.squeeze(torch.gather(probs, dim=-1, index=torch.unsqueeze(sampled_ids, -1)), -1)
            selected_probs = torch.where(unknown_map, selected_probs.double(), CONFIDENCE_OF_KNOWN_TOKENS).float()
            mask_len = torch.Tensor([np.floor(unknown_number_in_the_beginning * mask_ratio)])
            mask_len = torch.maximum(torch.Tensor([1]),
                                     torch.minimum(torch.sum(unknown_map, dim=-1, keepdims=True) - 1, mask_len))
            # official mask_by_random_topk(mask_len[0], probs, temperature * (1 - ratio)) with the
            # Gumbel term left out: confidence = log(probs)
            ml = mask_len[0].squeeze()
            confidence = torch.log(selected_probs)
            sorted_confidence, _ = torch.sort(confidence, axis=-1)
            cut_off = sorted_confidence[:, ml.long() - 1:ml.long()]
            masking = confidence <= cut_off
            k = int(ml.long())
            min_cutoff_gap = min(min_cutoff_gap, float((sorted_confidence[:, k] - sorted_confidence[:, k - 1]).min()))
            token_indices = torch.where(masking, mask_token_id, sampled_ids)
            steps.append({"step": step, "mask_ratio": float(mask_ratio), "unknown": int(unknown_map.sum(1)[0]),
                          "mask_len": k, "masked_next": [int(m) for m in masking.sum(1)]})
        z_q = model.vqgan.quantize.get_codebook_entry(sampled_ids, shape=(bsz, grid, grid, VQ_EMBED_DIM))
        gen_images = model.vqgan.decode(z_q)
    return sampled_ids, gen_images, first, {
        "mask_rate": float(mask_rate), "active_steps": steps,
        "min_argmax_gap": min_argmax_gap, "min_cutoff_gap": min_cutoff_gap}


def fresh_copy(model, like):
    """copy.deepcopy(model) whose masking-ratio distribution draws from numpy's global generator.

    scipy's frozen truncnorm holds np.random's global RandomState; deepcopy gives the copy a private
    snapshot of it, which np.random.seed no longer reaches (in the official run only the deep-copied
    teacher has one, and it never masks at random). The copy gets `like`'s distribution back."""
    m = copy.deepcopy(model)
    m.mask_ratio_generator = like.mask_ratio_generator
    return m


def grads_of(model, names):
    params = dict(model.named_parameters())
    out = {}
    for n in names:
        g = params[n].grad
        assert g is not None, n
        out[n] = g.detach().clone().contiguous()
    return out


def total_grad_norm(model):
    """The norm torch.nn.utils.clip_grad_norm_(model.parameters(), ...) clips (None grads skipped)."""
    gs = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    return torch.norm(torch.stack([torch.norm(g, 2.0) for g in gs]), 2.0)


def ours_step(engine_unlearn, student, teacher, images, labels, drop_raw, all_raw):
    """engine_unlearn.train_one_epoch, one iteration, without amp / scaler / clipping / step."""
    student.zero_grad(set_to_none=True)
    np.random.seed(SEED_MASK)
    torch.manual_seed(SEED_MASK)
    latent, _, _, _, _, token_drop_mask_raw, token_all_mask_raw = student(images, train_encoder=True)
    assert torch.equal(token_drop_mask_raw, drop_raw) and torch.equal(token_all_mask_raw, all_raw)
    with torch.no_grad():
        teacher.eval()
        guide, _, _, _, _, _, _ = teacher(images, train_encoder=True, token_drop_mask_raw=token_drop_mask_raw,
                                          token_all_mask_raw=token_all_mask_raw)
        torch.manual_seed(SEED_NOISE)  # noise_type 'normal'
        std = torch.std(images)
        mis_guide_input = torch.clamp(torch.randn_like(images) * std + torch.mean(images), 0.0, 1.0)
        mis_guide, _, _, _, _, _, _ = teacher(mis_guide_input, train_encoder=True,
                                              token_drop_mask_raw=token_drop_mask_raw,
                                              token_all_mask_raw=token_all_mask_raw)
    retain_l2_loss, forget_l2_loss = engine_unlearn.compute_loss(latent, guide, mis_guide, labels)
    loss = RETAIN_ALPHA * retain_l2_loss + FORGET_ALPHA * forget_l2_loss
    loss = loss / ACCUM_ITER
    loss.backward()
    return {"loss": loss.detach(), "retain_l2": retain_l2_loss.detach(), "forget_l2": forget_l2_loss.detach(),
            "latent": latent.detach(), "guide": guide, "mis_guide": mis_guide,
            "noise_images": mis_guide_input, "grad_norm": total_grad_norm(student)}


# ----------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", default=os.environ.get("I2I_MAGE_DIR"),
                    help="checkout of the i2i branch of jpmorganchase/i2i_mage (default: $I2I_MAGE_DIR)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    if not args.official:
        sys.exit("pass --official DIR or set I2I_MAGE_DIR (git clone -b i2i https://github.com/jpmorganchase/i2i_mage)")
    torch.set_num_threads(1)
    models_mage, engine_unlearn, VQModel = import_official(args.official)
    out_dir = os.path.join(args.out, "mage_ref")
    os.makedirs(out_dir, exist_ok=True)

    images = load_images(args.data)
    B = images.shape[0]
    grid = IMG // MAGE_KW["patch_size"]
    images_masked, token_all_mask, hole = testpaint_center_masks(images, grid)
    labels = torch.tensor(LABELS, dtype=torch.int64)

    # ---- 1. tokenizer: official VQModel, random weights, codebook from encoder outputs ----------
    torch.manual_seed(SEED_VQ)
    vq = VQModel(ddconfig=dict(VQ_DDCONFIG), n_embed=VQ_N_EMBED, embed_dim=VQ_EMBED_DIM)
    randomise(vq, SEED_VQ)
    with torch.no_grad():
        h = torch.cat([vq.encoder(images), vq.encoder(images_masked)])
        rows = h.permute(0, 2, 3, 1).reshape(-1, VQ_EMBED_DIM)
        rows = torch.unique(rows, dim=0)  # sorted, distinct (the hole repeats vectors)
        g = torch.Generator().manual_seed(SEED_CODEBOOK)
        pick = torch.randperm(rows.shape[0], generator=g)[:VQ_N_EMBED]
        codebook = rows[pick] + 0.1 * rows.std(0) * torch.randn(VQ_N_EMBED, VQ_EMBED_DIM, generator=g)
        vq.quantize.embedding.weight.copy_(codebook)
    vq_sd = OrderedDict((k, v.detach().clone().contiguous()) for k, v in vq.state_dict().items())
    vq_path = os.path.join(out_dir, "vqgan.ckpt")
    torch.save({"state_dict": vq_sd}, vq_path)

    # ---- MAGE: official constructor (loads vqgan.ckpt strictly), random weights -----------------
    def build():
        torch.manual_seed(SEED_MAGE)
        return models_mage.MaskedGenerativeEncoderViT(
            **MAGE_KW, norm_layer=partial(nn.LayerNorm, eps=LAYER_NORM_EPS), norm_pix_loss=False,
            **MASK_RATIO_KW, vqgan_ckpt_path=vq_path)

    model = build()
    randomise(model, SEED_MAGE)
    for k, v in vq_sd.items():
        assert torch.equal(model.state_dict()["vqgan." + k], v), k
    mage_sd = OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())
    mage_path = os.path.join(out_dir, "mage.pth")
    torch.save({"model": mage_sd, "epoch": 0}, mage_path)
    reloaded = build()
    reloaded.load_state_dict(torch.load(mage_path, map_location="cpu")["model"])  # strict, as misc.load_model
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, mage_sd[k]), k
    model = reloaded
    model.eval()  # see the docstring: disables BertEmbeddings' dropout(0.1), nothing else

    assert model.codebook_size == VQ_N_EMBED
    vocab_size = model.token_emb.word_embeddings.num_embeddings
    assert model.patch_embed.num_patches == grid * grid

    # ---- 1. tokenizer outputs on the masked images ----------------------------------------------
    t = {"images": images, "images_masked": images_masked, "labels": labels}
    with torch.no_grad():
        t["vq_h"] = model.vqgan.encoder(images_masked)
        zq, _, (_, _, idx) = model.vqgan.encode(images_masked)
        t["vq_tokens"] = idx.reshape(B, -1).long()
        t["vq_zq"] = zq
        t["vq_decoded"] = model.vqgan.decode(zq)
    gaps = {"images": vq_min_gap(model.vqgan, images), "images_masked": vq_min_gap(model.vqgan, images_masked)}

    # ---- 2. inference path (first forward of the loop) and 3. greedy MaskGIT -------------------
    t["token_all_mask"] = token_all_mask
    greedy_tokens, greedy_image, (enc_out, logits), loop_info = greedy_inpaint(model, images_masked,
                                                                               token_all_mask.clone(), grid)
    t["encoder_out"] = enc_out
    t["logits_codebook"] = logits[..., :VQ_N_EMBED].contiguous()
    t["greedy_tokens"] = greedy_tokens.long()
    t["greedy_image"] = greedy_image
    with torch.no_grad():  # the same encoder output through the official forward_encoder (no drop)
        lat, gt, _, _, _, _, _ = model.forward_encoder(images_masked, torch.zeros_like(token_all_mask),
                                                       token_all_mask.clone())
    assert torch.allclose(lat, enc_out, atol=1e-6, rtol=0) and torch.equal(gt, t["vq_tokens"])

    # ---- 4. training path: official random masking under fixed seeds ---------------------------
    np.random.seed(SEED_MASK)
    torch.manual_seed(SEED_MASK)
    with torch.no_grad():
        _, train_tokens, _, _, _, drop_raw, all_raw = model(images, train_encoder=True)
    np.random.seed(SEED_MASK)
    mask_rate = float(model.mask_ratio_generator.rvs(1)[0])
    with torch.no_grad():
        latent, gt, drop_mask, all_mask, token_indices, _, _ = model(
            images, train_encoder=True, token_drop_mask_raw=drop_raw, token_all_mask_raw=all_raw)
        train_logits = model.forward_decoder(latent, drop_mask, all_mask)
    assert torch.equal(gt, train_tokens)
    t["drop_mask_raw"] = drop_raw.float()
    t["all_mask_raw"] = all_raw.float()
    t["train_tokens"] = train_tokens.long()
    t["train_encoder_out"] = latent
    t["train_logits_codebook"] = train_logits[..., :VQ_N_EMBED].contiguous()

    # ---- 5. one "ours" step (engine_unlearn.train_one_epoch) -----------------------------------
    student = model  # engine_unlearn: the model itself; the teacher is copy.deepcopy(model)
    teacher = copy.deepcopy(model)
    r = ours_step(engine_unlearn, student, teacher, images, labels, drop_raw, all_raw)
    assert torch.equal(r["latent"], latent)
    t["noise_images"] = r["noise_images"]
    t["ours_guide"] = r["guide"]
    t["ours_mis_guide"] = r["mis_guide"]
    t["ours_loss"] = r["loss"].reshape(())
    t["ours_retain_l2"] = r["retain_l2"].reshape(())
    t["ours_forget_l2"] = r["forget_l2"].reshape(())
    t["ours_grad_norm"] = r["grad_norm"].reshape(())
    for n, gr in grads_of(student, OURS_GRADS).items():
        t[f"ours_grad.{n}"] = gr
    # 5b. the same step with a student that differs from the teacher (only in the final encoder
    # norm), so that the retain term and its gradient are not zero as they are at step one.
    student_b = fresh_copy(teacher, model)
    gb = torch.Generator().manual_seed(SEED_STUDENT_B)
    with torch.no_grad():
        student_b.norm.weight.add_(0.1 * torch.randn(student_b.norm.weight.shape, generator=gb))
        student_b.norm.bias.add_(0.1 * torch.randn(student_b.norm.bias.shape, generator=gb))
    t["ours_b_student.norm.weight"] = student_b.norm.weight.detach().clone()
    t["ours_b_student.norm.bias"] = student_b.norm.bias.detach().clone()
    rb = ours_step(engine_unlearn, student_b, teacher, images, labels, drop_raw, all_raw)
    assert torch.equal(rb["noise_images"], r["noise_images"]) and torch.equal(rb["mis_guide"], r["mis_guide"])
    t["ours_b_latent"] = rb["latent"]
    t["ours_b_loss"] = rb["loss"].reshape(())
    t["ours_b_retain_l2"] = rb["retain_l2"].reshape(())
    t["ours_b_forget_l2"] = rb["forget_l2"].reshape(())
    t["ours_b_grad_norm"] = rb["grad_norm"].reshape(())
    for n, gr in grads_of(student_b, OURS_GRADS).items():
        t[f"ours_b_grad.{n}"] = gr
    gaps["noise_images"] = vq_min_gap(model.vqgan, r["noise_images"])

    # ---- 6. one Max Loss step (engine_baseline.train_one_epoch_max_full_model_loss) ------------
    ml_model = fresh_copy(teacher, model)
    ml_model.zero_grad(set_to_none=True)
    loss, _, ml_all_mask, retain_loss, forget_loss = ml_model(
        images, labels=labels, forget_alpha=FORGET_ALPHA, token_drop_mask_raw=drop_raw, token_all_mask_raw=all_raw)
    (loss / ACCUM_ITER).backward()
    t["maxloss_loss"] = loss.detach().reshape(())
    t["maxloss_retain"] = retain_loss.detach().reshape(())
    t["maxloss_forget"] = forget_loss.detach().reshape(())
    t["maxloss_grad_norm"] = total_grad_norm(ml_model).reshape(())
    for n, gr in grads_of(ml_model, MAXLOSS_GRADS).items():
        t[f"maxloss_grad.{n}"] = gr
    # the engine's own call (random masks from the seeds) gives the same loss
    np.random.seed(SEED_MASK)
    torch.manual_seed(SEED_MASK)
    with torch.no_grad():
        loss2, _, mask2, _, _ = fresh_copy(teacher, model)(images, labels=labels, forget_alpha=FORGET_ALPHA)
    assert torch.equal(mask2[:, 1:], all_raw) and torch.equal(loss2, loss.detach())

    margins = {"vq_distance_gap": min(v[0] for v in gaps.values()),
               "greedy_argmax_gap": loop_info["min_argmax_gap"], "greedy_cutoff_gap": loop_info["min_cutoff_gap"]}
    for k, v in margins.items():
        assert v >= MIN_MARGIN, f"decision margin {k} = {v:.3g} < {MIN_MARGIN}: the fixture would be fragile"
    for s in loop_info["active_steps"]:
        assert all(m == s["mask_len"] for m in s["masked_next"]), s  # no ties at the cut-off

    # ---- write ----------------------------------------------------------------------------------
    t = {k: v.detach().contiguous() for k, v in t.items()}
    for k, v in t.items():
        if v.dtype.is_floating_point:
            t[k] = v.float().contiguous()
        else:
            t[k] = v.long().contiguous()
    case_path = os.path.join(out_dir, "case.safetensors")
    save_file(t, case_path, metadata={"format": "pt"})

    used = {name: int(torch.unique(v).numel()) for name, v in (("vq_tokens", t["vq_tokens"]),
                                                               ("train_tokens", t["train_tokens"]),
                                                               ("greedy_tokens", t["greedy_tokens"]))}
    config = {
        "source": "official i2i_mage (branch i2i): models_mage.py, taming/, testpaint.py, engine_unlearn.py, "
                  "engine_baseline.py, run by tools/reference/mage_reference.py with random weights",
        "vqgan": {"embed_dim": VQ_EMBED_DIM, "n_embed": VQ_N_EMBED, "ddconfig": VQ_DDCONFIG},
        "mage": {**{k: v for k, v in MAGE_KW.items()}, "layer_norm_eps": LAYER_NORM_EPS,
                 "token_emb_layer_norm_eps": model.token_emb.LayerNorm.eps,
                 "mlm_layer_norm_eps": model.mlm_layer.ln.eps,
                 "codebook_size": model.codebook_size, "vocab_size": vocab_size,
                 "fake_class_label": model.fake_class_label, "mask_token_label": model.mask_token_label,
                 "max_position_embeddings": model.token_emb.position_embeddings.num_embeddings,
                 "pad_with_cls_token": model.pad_with_cls_token, **MASK_RATIO_KW},
        "source_images": SOURCE_IMAGES,
        "image_preprocessing": "PIL convert('RGB').resize((32, 32), BICUBIC), uint8 / 255, float32 NCHW",
        "inpaint": {"mode": "center", "mask_ratio": INPAINT_MASK_RATIO, "pixel_fill": list(IMAGENET_MEAN),
                    **hole, "token_margin": LATENT_MARGIN, "num_iter": NUM_ITER,
                    "choice_temperature": CHOICE_TEMPERATURE,
                    "unknown_number_in_the_beginning": grid * grid,
                    "confidence_of_known_tokens": CONFIDENCE_OF_KNOWN_TOKENS,
                    "sampling": "greedy: argmax instead of Categorical sampling, no Gumbel noise "
                                "(confidence = log(prob of the chosen token))",
                    **loop_info},
        "training": {"labels": LABELS, "forget_if_label_below": 100, "mask_seed": SEED_MASK,
                     "mask_rate": mask_rate, "num_dropped_tokens": int(drop_raw.sum(1)[0]),
                     "num_masked_tokens": int(all_raw.sum(1)[0]), "noise_seed": SEED_NOISE,
                     "noise_type": "normal", "retain_alpha": RETAIN_ALPHA, "forget_alpha": FORGET_ALPHA,
                     "accum_iter": ACCUM_ITER, "label_smoothing": model.criterion.smoothing,
                     "student_mode": "eval (BertEmbeddings dropout 0.1 off)",
                     "ours_b_student": "teacher weights with norm.weight/bias replaced by the stored "
                                       "ours_b_student.norm.*"},
        "seeds": {"vq_weights": SEED_VQ, "codebook": SEED_CODEBOOK, "mage_weights": SEED_MAGE},
        "diagnostics": {"codes_used": used,
                        "vq_min_distance_gap_and_max_min_distance": gaps},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    # The tokenizer stays inside mage.pth under `vqgan.*`, as in the real mage-vitb-1600.pth; a
    # separate tokenizer file is exercised by ../shared/fixtures/mage. Dropping it halves the size.
    os.remove(vq_path)

    for f in sorted(os.listdir(out_dir)):
        print(f"wrote {os.path.join(out_dir, f)} ({os.path.getsize(os.path.join(out_dir, f))} bytes)")
    for k, v in t.items():
        s = f"max|.|={v.abs().max().item():.6g}" if v.dtype == torch.float32 else f"min={v.min().item()} max={v.max().item()}"
        print(f"  {k:45s} {str(tuple(v.shape)):18s} {str(v.dtype):14s} {s}")
    print(f"  codes used: {used}; vq gaps: {gaps}")
    print(f"  loop: mask_rate={loop_info['mask_rate']:.4f} active steps "
          f"{[s['step'] for s in loop_info['active_steps']]} mask_len {[s['mask_len'] for s in loop_info['active_steps']]}")
    print(f"  min argmax gap {loop_info['min_argmax_gap']:.4g}, min cutoff gap {loop_info['min_cutoff_gap']:.4g}")
    print(f"  training: mask_rate={mask_rate:.6f} masked={config['training']['num_masked_tokens']} "
          f"dropped={config['training']['num_dropped_tokens']}")
    for p in ("ours", "ours_b"):
        print(f"  {p}: loss={t[p + '_loss'].item():.6g} retain={t[p + '_retain_l2'].item():.6g} "
              f"forget={t[p + '_forget_l2'].item():.6g} grad_norm={t[p + '_grad_norm'].item():.6g}")
    print(f"  maxloss: loss={t['maxloss_loss'].item():.6g} retain={t['maxloss_retain'].item():.6g} "
          f"forget={t['maxloss_forget'].item():.6g} grad_norm={t['maxloss_grad_norm'].item():.6g}")


if __name__ == "__main__":
    main()
