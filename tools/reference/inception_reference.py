#!/usr/bin/env python3
"""Reference features and metrics of the FID Inception-v3 (pytorch-fid 0.3.0 structure, torch-fidelity
0.4.0, clean-fid resize) with formula weights instead of the downloaded TF-ported ones, plus the
torchvision ImageNet Inception-v3 structure with the same formula (the paper's Inception Score network;
its score is made by paper_is_reference.py) and a pure-Python model of numpy's legacy RandomState(seed).permutation (self-checked
against numpy; torch-fidelity's IS shuffle uses it).

Writes tests/fixtures/inception/. Deterministic, CPU only, no downloads (the weight download
function of pytorch-fid is replaced by the formula; torch-fidelity gets the same weights from a
temporary file outside the repository).

Usage: python tools/reference/inception_reference.py [--data DIR] [--out DIR]
"""
import argparse
import glob
import importlib.metadata
import json
import math
import os
import sys
import re
import tempfile
import warnings

import numpy as np
import scipy
import scipy.linalg
import scipy.stats
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import save_file

import cleanfid
import pytorch_fid
import pytorch_fid.fid_score as pf_score
import pytorch_fid.inception as pf_inc
import torch_fidelity
from cleanfid.resize import build_resizer
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from formula_hash import MASK64, fnv1a64, splitmix64  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ----------------------------------------------------------------------------------------------
# Formula weights
# ----------------------------------------------------------------------------------------------


def formula_uv(name: str, n: int):
    x = np.uint64(fnv1a64(name.encode())) + np.arange(n, dtype=np.uint64)
    u = (splitmix64(x) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # [0,1)
    return u, 2.0 * u - 1.0


# The formula (README table). Conv weights are He-uniform scaled by 1.5 with a small negative mean
# (-2/fan_in): each output subtracts about 2x the local mean of its inputs, a threshold proportional
# to the signal itself (the net stays positively homogeneous), which keeps the pooled features
# input-dependent through all 94 conv layers instead of collapsing onto one input-independent vector.
FC_SCALE = 0.3


def formula_values(name: str, shape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float64 values of one tensor from its u, v (float64, row-major); see the README table."""
    if name.endswith(".conv.weight"):
        fan_in = shape[1] * shape[2] * shape[3]
        return (1.5 * math.sqrt(6.0 / fan_in)) * v - 2.0 / fan_in
    if name.endswith(".bn.weight"):
        return 1.0 + 0.1 * v
    if name.endswith(".bn.bias"):
        return 0.01 * v
    if name.endswith(".bn.running_mean"):
        return 0.01 * v
    if name.endswith(".bn.running_var"):
        return np.ones_like(u)
    if name == "fc.weight":
        return FC_SCALE * v
    if name == "fc.bias":
        return 0.1 * v
    raise RuntimeError(f"no formula for {name}")


def formula_tensor(name: str, like: torch.Tensor) -> torch.Tensor:
    shape, n = tuple(like.shape), like.numel()
    u, v = formula_uv(name, n)
    val = formula_values(name, shape, u, v)
    assert val.dtype == np.float64 and val.shape == (n,)
    return torch.from_numpy(val.astype(np.float32).reshape(shape))


def build_fid_inception_structure():
    """torchvision Inception3 with the FID blocks, the way pytorch_fid.inception.fid_inception_v3 builds it
    (without its weight download)."""
    inc = pf_inc._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inc.Mixed_5b = pf_inc.FIDInceptionA(192, pool_features=32)
    inc.Mixed_5c = pf_inc.FIDInceptionA(256, pool_features=64)
    inc.Mixed_5d = pf_inc.FIDInceptionA(288, pool_features=64)
    inc.Mixed_6b = pf_inc.FIDInceptionC(768, channels_7x7=128)
    inc.Mixed_6c = pf_inc.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6d = pf_inc.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6e = pf_inc.FIDInceptionC(768, channels_7x7=192)
    inc.Mixed_7b = pf_inc.FIDInceptionE_1(1280)
    inc.Mixed_7c = pf_inc.FIDInceptionE_2(2048)
    return inc


def formula_state_dict(module=None):
    """Formula state dict for `module`'s state_dict keys (default: the FID Inception structure)."""
    if module is None:
        module = build_fid_inception_structure()
    sd = {}
    for k, t in module.state_dict().items():
        sd[k] = t.clone() if k.endswith("num_batches_tracked") else formula_tensor(k, t)
    return sd


def paper_inception_model():
    """torchvision's ImageNet Inception-v3 structure (standard torchvision blocks, 1000 classes), as the
    paper's inception-score-pytorch code builds it, with formula weights instead of the download.
    weights=None: no download; transform_input=False (what that code passes; also Inception3's default
    when no weights are given); aux_logits=False (AuxLogits is only used in training mode, and the
    pretrained builder drops it too when aux_logits=False is asked); init_weights=False (every tensor is
    overwritten below, and torchvision's truncated-normal init would only cost time)."""
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=False,
                                            init_weights=False)
    sd = formula_state_dict(model)
    model.load_state_dict(sd, strict=True)
    return model.eval(), sd


def pytorch_fid_model(sd):
    """pytorch_fid.inception.InceptionV3 (use_fid_inception=True) whose weight download returns `sd`."""
    orig = pf_inc.load_state_dict_from_url

    def fake_load(url, progress=True, **kw):
        assert url == pf_inc.FID_WEIGHTS_URL, url
        return {k: v.clone() for k, v in sd.items()}

    pf_inc.load_state_dict_from_url = fake_load
    try:
        model = pf_inc.InceptionV3(output_blocks=[0, 1, 2, 3], resize_input=True, normalize_input=True,
                                   use_fid_inception=True)
    finally:
        pf_inc.load_state_dict_from_url = orig
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def image_sets(data_dir):
    tin = glob.glob(os.path.join(data_dir, "tiny-imagenet-200", "val", "images", "*.JPEG"))
    tin.sort(key=lambda p: int(re.match(r"val_(\d+)\.JPEG$", os.path.basename(p)).group(1)))
    mp = sorted(glob.glob(os.path.join(data_dir, "miniplaces", "data", "images", "val", "*.jpg")))
    a, b = tin[:40], mp[:40]
    assert [os.path.basename(p) for p in a] == [f"val_{i}.JPEG" for i in range(40)]
    return a, b


def load_rgb(path):
    with Image.open(path) as im:
        return im.convert("RGB")


def uint8_chw(img):
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class Uint8Dataset(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.items = [uint8_chw(load_rgb(p)) for p in paths]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------
def stats(feats):
    act = np.asarray(feats, dtype=np.float64)
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def fid_pytorch_fid(mu1, s1, mu2, s2):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            val = float(pf_score.calculate_frechet_distance(mu1, s1, mu2, s2))
            err = None
        except ValueError as e:
            val, err = None, str(e)
    msgs = sorted({str(x.message) for x in w})
    return val, err, msgs


def fid_eigh(mu1, s1, mu2, s2):
    w, V = np.linalg.eigh(s1)
    A = (V * np.sqrt(np.clip(w, 0, None))) @ V.T  # S1^(1/2)
    M = A @ s2 @ A
    M = (M + M.T) / 2
    e = np.linalg.eigvalsh(M)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(e, 0, None))))
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def frechet_report(tag, fa, fb):
    mu1, s1 = stats(fa)
    mu2, s2 = stats(fb)
    val, err, msgs = fid_pytorch_fid(mu1, s1, mu2, s2)
    eig = fid_eigh(mu1, s1, mu2, s2)
    out = {
        f"fid_{tag}_pytorch_fid": val,
        f"fid_{tag}_eigh": eig,
        f"fid_{tag}_abs_diff": None if val is None else abs(val - eig),
        f"fid_{tag}_rel_diff": None if val is None else abs(val - eig) / abs(eig),
        f"fid_{tag}_pytorch_fid_error": err,
        f"fid_{tag}_pytorch_fid_warnings": msgs,
        f"fid_{tag}_terms": {"mean_term": float((mu1 - mu2).dot(mu1 - mu2)), "trace_sigma_A": float(np.trace(s1)),
                             "trace_sigma_B": float(np.trace(s2)),
                             "two_tr_sqrt_eigh": float(np.trace(s1) + np.trace(s2) + (mu1 - mu2).dot(mu1 - mu2)
                                                       - eig)},
        f"rank_sigma_{tag}_A": int(np.linalg.matrix_rank(s1)),
        f"rank_sigma_{tag}_B": int(np.linalg.matrix_rank(s2)),
    }
    print(f"  FID {tag}: pytorch-fid (scipy sqrtm) = {val!r}  eigh = {eig!r}  err={err} warnings={msgs}")
    return out



# ----------------------------------------------------------------------------------------------
# Signal check: per-layer activation statistics of a real image batch
# ----------------------------------------------------------------------------------------------
def layer_signal(named_modules, run):
    """Hooks each (name, module), calls run(), returns per-layer stats of the module outputs.
    spread_ratio = mean over channels of the std over images of the channel's spatial mean, divided by
    the mean over channels and images of |spatial mean| (the pool3 criterion, layer by layer)."""
    acts, hooks = [], []
    for name, mod in named_modules:
        hooks.append(mod.register_forward_hook(lambda m, i, o, name=name: acts.append((name, o.detach()))))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    grouped = {}
    for name, o in acts:
        grouped.setdefault(name, []).append(o)
    rows = []
    for name, os_ in grouped.items():
        o = torch.cat(os_, 0)
        m = o.double().mean((2, 3))
        rows.append({"layer": name, "shape": list(o.shape[1:]), "std": float(o.double().std()),
                     "mean": float(o.double().mean()), "spread_ratio": float(m.std(0).mean() / m.abs().mean())})
    return rows


def print_signal(title, rows):
    print(title)
    for r in rows:
        print(f"  {r['layer']:28s} {str(tuple(r['shape'])):16s} std {r['std']:9.4f}  mean {r['mean']:9.4f}  "
              f"spread_ratio {r['spread_ratio']:.3f}")


# ----------------------------------------------------------------------------------------------
# numpy legacy RandomState: pure-Python MT19937 and permutation (self-check; the Rust side ports it)
# ----------------------------------------------------------------------------------------------
class PyMT19937:
    """MT19937 as numpy's RandomState(seed) seeds it for an integer seed in [0, 2^32): the reference
    init_genrand(seed) (key[0] = seed, key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >> 30)) + i mod 2^32),
    position 624 (so the first draw regenerates all 624 words), standard tempering."""
    N, M = 624, 397

    def __init__(self, seed: int):
        assert 0 <= seed < 2 ** 32
        self.key = [seed]
        for i in range(1, self.N):
            prev = self.key[-1]
            self.key.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
        self.pos = self.N
        self.words_used = 0

    def _regenerate(self):
        k = self.key
        for i in range(self.N):
            y = (k[i] & 0x80000000) | (k[(i + 1) % self.N] & 0x7FFFFFFF)
            k[i] = k[(i + self.M) % self.N] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
        self.pos = 0

    def next_u32(self) -> int:
        if self.pos >= self.N:
            self._regenerate()
        y = self.key[self.pos]
        self.pos += 1
        self.words_used += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y


def py_legacy_bounded(mt: PyMT19937, hi: int) -> int:
    """Uniform integer in [0, hi] the way numpy's legacy shuffle draws it (hi < 2^32): mask = smallest
    2^k - 1 >= hi; draw a raw 32-bit word, keep its low bits (word & mask), reject and redraw while > hi.
    hi == 0 draws nothing."""
    if hi == 0:
        return 0
    mask = hi
    for sh in (1, 2, 4, 8, 16):
        mask |= mask >> sh
    while True:
        r = mt.next_u32() & mask
        if r <= hi:
            return r


def py_legacy_permutation(seed: int, n: int):
    """np.random.RandomState(seed).permutation(n): arange(n), then Fisher-Yates from the end:
    for i = n-1 down to 1: j = bounded(i) (inclusive), swap a[i], a[j]. Returns (perm, raw words used)."""
    mt = PyMT19937(seed)
    a = list(range(n))
    for i in range(n - 1, 0, -1):
        j = py_legacy_bounded(mt, i)
        a[i], a[j] = a[j], a[i]
    return a, mt.words_used


def numpy_randomstate_checks():
    """Asserts the pure-Python model against numpy and returns the values.json entries."""
    out = {}
    st = np.random.RandomState(2020).get_state()
    assert st[0] == "MT19937" and st[2] == 624
    mt = PyMT19937(2020)
    assert mt.key == [int(x) for x in st[1]], "MT19937 key after RandomState(2020) seeding"
    raw = [int(x) for x in np.random.RandomState(2020)._bit_generator.random_raw(8)]
    assert [mt.next_u32() for _ in range(8)] == raw, "raw 32-bit outputs"
    for n in (1, 2, 3, 10, 80, 1000, 4097):
        assert py_legacy_permutation(2020, n)[0] == [int(i) for i in np.random.RandomState(2020).permutation(n)], n
    for seed in (0, 1, 12345, 2 ** 32 - 1):
        assert py_legacy_permutation(seed, 777)[0] == [int(i) for i in np.random.RandomState(seed).permutation(777)]
    a = np.arange(80)
    np.random.RandomState(2020).shuffle(a)
    assert [int(i) for i in a] == py_legacy_permutation(2020, 80)[0], "shuffle(arange) == permutation"
    # choice(n, m, replace=False) (KID subsets) == permutation(n)[:m]; consecutive calls continue the stream
    rs = np.random.RandomState(2020)
    c1, c2 = rs.choice(40, 40, replace=False), rs.choice(40, 40, replace=False)
    mt = PyMT19937(2020)

    def perm_on(mt, n):
        a = list(range(n))
        for i in range(n - 1, 0, -1):
            j = py_legacy_bounded(mt, i)
            a[i], a[j] = a[j], a[i]
        return a
    assert [int(i) for i in c1] == perm_on(mt, 40) and [int(i) for i in c2] == perm_on(mt, 40)
    assert [int(i) for i in np.random.RandomState(7).choice(100, 10, replace=False)] == \
        py_legacy_permutation(7, 100)[0][:10]
    out["np_randomstate_2020_key_first4"] = [int(x) for x in st[1][:4]]
    out["np_randomstate_2020_pos"] = int(st[2])
    out["np_randomstate_2020_first_uint32"] = raw
    for n in (10, 80, 1000):
        perm, used = py_legacy_permutation(2020, n)
        out[f"np_randomstate_2020_permutation_{n}"] = perm
        out[f"np_randomstate_2020_permutation_{n}_words_used"] = used
    return out

# ----------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.manual_seed(0)
    out = os.path.join(args.out, "inception")
    os.makedirs(out, exist_ok=True)
    values = {
        "versions": {
            "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "pytorch_fid": importlib.metadata.version("pytorch-fid"),
            "torch_fidelity": torch_fidelity.__version__, "clean_fid": importlib.metadata.version("clean-fid"),
        }
    }

    # ---- weights ---------------------------------------------------------------------------
    sd = formula_state_dict()
    float_keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    n_total = sum(sd[k].numel() for k in float_keys)
    print(f"formula state dict: {len(sd)} entries ({len(float_keys)} float tensors, {n_total} values)")
    spot = {k: sd[k].flatten()[:16].clone() for k in float_keys}
    save_file(spot, os.path.join(out, "weights_spot.safetensors"), metadata={"format": "pt"})
    values["weights_checksums"] = {
        k: [math.fsum(sd[k].double().flatten().tolist()), math.fsum(sd[k].double().abs().flatten().tolist())]
        for k in float_keys
    }
    dbg_name = "fc.bias"
    u, _ = formula_uv(dbg_name, 4)
    x = np.uint64(fnv1a64(dbg_name.encode())) + np.arange(4, dtype=np.uint64)
    values["formula_debug"] = {
        "name": dbg_name,
        "fnv1a64_hex": f"{fnv1a64(dbg_name.encode()):016x}",
        "splitmix64_first4_hex": [f"{int(z):016x}" for z in splitmix64(x)],
        "u_first4": [float(t) for t in u],
        "value_first4_float32": [float(t) for t in sd[dbg_name][:4]],
    }
    dbg_conv = "Conv2d_1a_3x3.conv.weight"  # [32,3,3,3], fan_in 27
    u, v = formula_uv(dbg_conv, 4)
    values["formula_debug_conv"] = {
        "name": dbg_conv,
        "fan_in": 27,
        "fnv1a64_hex": f"{fnv1a64(dbg_conv.encode()):016x}",
        "u_first4": [float(t) for t in u],
        "value_first4_float64": [float(t) for t in formula_values(dbg_conv, (32, 3, 3, 3), u, v)],
        "value_first4_float32": [float(t) for t in sd[dbg_conv].flatten()[:4]],
    }
    values["formula"] = {
        "conv.weight": "(1.5 * sqrt(6 / fan_in)) * v - 2 / fan_in, fan_in = in*kh*kw",
        "bn.weight": "1 + 0.1 * v", "bn.bias": "0.01 * v", "bn.running_mean": "0.01 * v",
        "bn.running_var": "1 (exactly)", "fc.weight": f"{FC_SCALE} * v", "fc.bias": "0.1 * v",
        "precision": "float64, then cast to float32 (round to nearest even)",
    }
    small_keys = ["Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_var", "fc.bias"]
    small = {k: sd[k].clone() for k in small_keys}
    legacy_path = os.path.join(out, "legacy_small.pth")
    # The legacy (non-zip) format names storages by memory address, so its bytes change on every save;
    # keep the existing file when its contents are already identical.
    same = False
    if os.path.exists(legacy_path):
        old = torch.load(legacy_path, weights_only=True)
        same = list(old) == small_keys and all(torch.equal(old[k], small[k]) for k in small_keys)
    if not same:
        torch.save(small, legacy_path, _use_new_zipfile_serialization=False)
    torch.save(small, os.path.join(out, "zip_small.pth"))

    # ---- images ----------------------------------------------------------------------------
    paths_a, paths_b = image_sets(args.data)
    values["set_A"] = [os.path.relpath(p, args.data) for p in paths_a]
    values["set_B"] = [os.path.relpath(p, args.data) for p in paths_b]
    imgs_a = [load_rgb(p) for p in paths_a]
    imgs_b = [load_rgb(p) for p in paths_b]
    values["set_A_source_modes"] = sorted({Image.open(p).mode for p in paths_a})
    values["set_B_source_modes"] = sorted({Image.open(p).mode for p in paths_b})

    # ---- pytorch-fid mode ------------------------------------------------------------------
    model = pytorch_fid_model(sd)

    def pf_features(imgs):
        feats = {64: [], 192: [], 768: [], 2048: []}
        with torch.no_grad():
            for img in imgs:  # batch size 1: A (64x64) and B (128x128) are resized separately
                x = TF.to_tensor(img).unsqueeze(0)
                outs = model(x)
                for dim, o in zip((64, 192, 768, 2048), outs):
                    if o.shape[2] != 1 or o.shape[3] != 1:
                        o = torch.nn.functional.adaptive_avg_pool2d(o, output_size=(1, 1))
                    feats[dim].append(o.squeeze(3).squeeze(2))
        return {d: torch.cat(v, 0) for d, v in feats.items()}

    print("pytorch-fid features ...")
    fa, fb = pf_features(imgs_a), pf_features(imgs_b)
    # cross-check against pytorch-fid's own get_activations (2048, batch size 1) for the first 4 images
    m2048 = pytorch_fid_model(sd)
    m2048.output_blocks, m2048.last_needed_block = [3], 3
    act = pf_score.get_activations(paths_a[:4], m2048, batch_size=1, dims=2048, device="cpu", num_workers=0)
    assert np.allclose(act, fa[2048][:4].double().numpy(), rtol=1e-5, atol=1e-6)
    case = {
        "pf_feat2048_A": fa[2048], "pf_feat2048_B": fb[2048],
        "pf_feat64_A": fa[64][:8], "pf_feat192_A": fa[192][:8], "pf_feat768_A": fa[768][:8],
        "pf_feat64_A40": fa[64], "pf_feat64_B40": fb[64],
    }
    def spread(f):
        f = f.double()
        return {"mean_abs": float(f.abs().mean()), "mean_std_over_images": float(f.std(0).mean()),
                "max_std_over_images": float(f.std(0).max()),
                "spread_ratio": float(f.std(0).mean() / f.abs().mean()),
                "dims_zero_for_all_images": int((f.abs().amax(0) == 0).sum()),
                "per_image_norm_min_max": [float(f.norm(dim=1).min()), float(f.norm(dim=1).max())]}
    values["feature_spread"] = {f"pf_{d}_{tag}": spread(f[d]) for d in (64, 2048) for tag, f in (("A", fa), ("B", fb))}
    values["feature_spread"]["pf_2048_AB"] = spread(torch.cat([fa[2048], fb[2048]]))
    print(f"  pool3 spread over A+B: {values['feature_spread']['pf_2048_AB']}")

    # per-layer signal of a real batch (first 8 A images, then first 8 B images)
    names = [["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"],
             ["Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"],
             ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"],
             ["Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]]
    assert [len(b) for b in model.blocks] == [len(n) for n in names]
    named = [(f"{nm} ({type(mod).__name__})", mod) for blk, nms in zip(model.blocks, names)
             for nm, mod in zip(nms, blk)]
    values["signal_per_layer_fid"] = layer_signal(named, lambda: [
        model(torch.stack([TF.to_tensor(im) for im in imgs[:8]])) for imgs in (imgs_a, imgs_b)])
    print_signal("per-layer signal, FID Inception, 8 A + 8 B images:", values["signal_per_layer_fid"])
    values.update(frechet_report("2048", fa[2048].numpy(), fb[2048].numpy()))
    values.update(frechet_report("64", fa[64].numpy(), fb[64].numpy()))

    # .npz stats in pytorch-fid's format (as save_fid_stats writes them), from the 64-d features
    for tag, f in (("a", fa[64]), ("b", fb[64])):
        mu, sigma = stats(f.numpy())
        np.savez_compressed(os.path.join(out, f"stats_{tag}.npz"), mu=mu, sigma=sigma)
    # what `python -m pytorch_fid stats_a.npz stats_b.npz` does after building its model:
    m1, s1 = pf_score.compute_statistics_of_path(os.path.join(out, "stats_a.npz"), None, 50, 64, "cpu")
    m2, s2 = pf_score.compute_statistics_of_path(os.path.join(out, "stats_b.npz"), None, 50, 64, "cpu")
    val, err, msgs = fid_pytorch_fid(m1, s1, m2, s2)
    values["fid_npz_64"] = val
    values["fid_npz_64_error"] = err
    print(f"  fid_npz_64 = {val!r}")

    # ---- torch-fidelity mode ---------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        wpath = os.path.join(tmp, "formula-inception.pth")
        torch.save(sd, wpath)
        tf_ext = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=wpath)
        tf_keys = list(tf_ext.state_dict().keys())
        values["torch_fidelity_key_map"] = {
            "identical_key_sets": sorted(tf_keys) == sorted(sd.keys()),
            "only_in_torch_fidelity": sorted(set(tf_keys) - set(sd)),
            "only_in_torchvision_fid": sorted(set(sd) - set(tf_keys)),
        }
        for k, t in tf_ext.state_dict().items():
            assert torch.equal(t, sd[k]), k
        tf_ext = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                             feature_extractor_weights_path=wpath)
        print("torch-fidelity features ...")
        with torch.no_grad():
            xa = torch.stack([uint8_chw(im) for im in imgs_a[:8]])
            f2048, logits_u = tf_ext(xa)
        case["tf_feat2048_A"] = f2048
        case["tf_logits_unbiased_A"] = logits_u

        common = dict(cuda=False, cache=False, verbose=False, save_cpu_ram=True, batch_size=40,
                      feature_extractor="inception-v3-compat", feature_extractor_weights_path=wpath)
        ds_a, ds_b = Uint8Dataset(paths_a), Uint8Dataset(paths_b)
        ds_ab = Uint8Dataset(paths_a + paths_b)
        isc = torch_fidelity.calculate_metrics(input1=ds_ab, isc=True, isc_splits=10, **common)
        values["isc_mean"] = isc["inception_score_mean"]
        values["isc_std"] = isc["inception_score_std"]
        with torch.no_grad():
            outs = [tf_ext(torch.stack([ds_ab[i] for i in range(j, j + 40)])) for j in (0, 40)]
        lu = torch.cat([o[1] for o in outs])
        chk = isc_features_to_metric(lu, splits=10, shuffle=True, rng_seed=2020)
        values["isc_check_direct"] = [chk["inception_score_mean"], chk["inception_score_std"]]
        tf_a, tf_b = outs[0][0], outs[1][0]
        kid = torch_fidelity.calculate_metrics(input1=ds_a, input2=ds_b, kid=True, fid=True,
                                               kid_subset_size=40, kid_subsets=100, **common)
        values["kid_mean"] = kid["kernel_inception_distance_mean"]
        values["kid_std"] = kid["kernel_inception_distance_std"]
        values["tf_fid_2048"] = kid["frechet_inception_distance"]
        for dt, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
            k = kid_features_to_metric(tf_a.to(dt), tf_b.to(dt), kid_subsets=100, kid_subset_size=40, verbose=False)
            values[f"kid_check_direct_{tag}"] = [k["kernel_inception_distance_mean"], k["kernel_inception_distance_std"]]
        print(f"  ISC {values['isc_mean']!r} +- {values['isc_std']!r}; KID {values['kid_mean']!r} +- "
              f"{values['kid_std']!r}; torch-fidelity FID {values['tf_fid_2048']!r}")
    # Metric maths alone, from stored tensors (so a port can test it without running the network):
    kw = dict(kid_subsets=100, kid_subset_size=40, verbose=False)
    for dt, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
        k = kid_features_to_metric(fa[2048].to(dt), fb[2048].to(dt), **kw)
        values[f"kid_from_pf_feat2048_{tag}"] = [k["kernel_inception_distance_mean"],
                                                 k["kernel_inception_distance_std"]]
    # scale of the kernel terms behind KID (float64, pf features): KID is a small difference of large terms
    xa_, xb_ = fa[2048].double(), fb[2048].double()
    kern = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3
    kaa, kbb, kab = kern(xa_, xa_), kern(xb_, xb_), kern(xa_, xb_)
    n_ = xa_.shape[0]
    values["kid_kernel_scale_pf_feat2048"] = {
        "mean_k_AA_offdiag": float((kaa.sum() - kaa.diagonal().sum()) / (n_ * (n_ - 1))),
        "mean_k_BB_offdiag": float((kbb.sum() - kbb.diagonal().sum()) / (n_ * (n_ - 1))),
        "mean_k_AB": float(kab.mean()), "max_k": float(max(kaa.max(), kbb.max(), kab.max()))}
    k = isc_features_to_metric(case["tf_logits_unbiased_A"], splits=2, shuffle=False)
    values["isc_from_tf_logits_unbiased_A_splits2_noshuffle"] = [k["inception_score_mean"], k["inception_score_std"]]
    values["isc_shuffle_permutation_80"] = [int(i) for i in np.random.RandomState(2020).permutation(80)]
    values["isc_procedure"] = (
        f"torch-fidelity {torch_fidelity.__version__}: torch_fidelity.calculate_metrics(input1=<Dataset of the 80 "
        "uint8 CHW tensors, set A then set B>, isc=True, isc_splits=10, samples_shuffle=True (default), "
        "rng_seed=2020 (default), feature_extractor='inception-v3-compat', feature_extractor_weights_path=<formula "
        "weights saved with torch.save>, batch_size=40, cuda=False, cache=False, save_cpu_ram=True). Internally: "
        "FeatureExtractorInceptionV3 feature 'logits_unbiased' (x.mm(fc.weight.T), no bias) -> "
        "metric_isc.isc_features_to_metric: features[np.random.RandomState(2020).permutation(80)], float64, "
        "softmax / log_softmax, split i = rows [i*N//10, (i+1)*N//10), per split exp(mean_rows sum_c p*(log p - "
        "log mean_rows p)); mean and population std (np.std) over the 10 splits.")
    values["kid_procedure"] = (
        f"torch-fidelity {torch_fidelity.__version__}: torch_fidelity.calculate_metrics(input1=<set A>, "
        "input2=<set B>, kid=True, kid_subsets=100, kid_subset_size=40, rng_seed=2020 (default), same extractor "
        "and weights, feature '2048'). metric_kid.kid_features_to_metric: features as float32 numpy; for each "
        "subset rng.choice(40, 40, replace=False) for A then for B (np.random.RandomState(2020)); polynomial "
        "kernel (x.y/2048 + 1)^3 computed in float32; unbiased MMD^2; mean and np.std over subsets. With "
        "subset size == N every subset is a permutation of all samples, so every MMD^2 is equal up to float32 "
        "summation order and kid_std is ~0. tf_fid_2048 is torch-fidelity's FID of the same call.")

    # ---- clean-fid mode --------------------------------------------------------------------
    resize = build_resizer("clean")  # PIL bicubic on each channel as float32 ('F' mode), 299x299, clip [0,255]
    clean = []
    for img in imgs_a[:8]:
        r = resize(np.array(img))  # HWC float32 in [0,255]
        clean.append(torch.from_numpy(r.transpose(2, 0, 1).copy()))
    clean = torch.stack(clean)
    clean_file = {"clean_resized_A0": clean[0].contiguous()}
    # Features of OUR formula FID-Inception (pytorch-fid blocks, no resize, no normalisation inside) fed the
    # clean-fid input normalisation of its 'clean' mode: (x - 128) / 128 on the [0,255] float resize output.
    with torch.no_grad():
        model.resize_input, model.normalize_input = False, False
        feats = [model((clean[i:i + 1] - 128) / 128)[3].squeeze(3).squeeze(2) for i in range(8)]
        model.resize_input, model.normalize_input = True, True
    case["clean_feat2048_A"] = torch.cat(feats, 0)

    # ---- paper Inception Score (inception-score-pytorch style) ----------------------------
    print("paper IS (torchvision ImageNet Inception-v3 structure) ...")
    pmodel, psd = paper_inception_model()
    # Same formula on the torchvision keys: every tensor whose key and shape also exist in the FID structure
    # is identical; fc (1000 classes) holds the first 1000 rows / values of the FID fc sequences.
    same_keys = [k for k in psd if k in sd and psd[k].shape == sd[k].shape]
    assert all(torch.equal(psd[k], sd[k]) for k in same_keys)
    paper_only = sorted(k for k in psd if k not in same_keys)
    assert paper_only == ["fc.bias", "fc.weight"], paper_only
    assert torch.equal(psd["fc.weight"], sd["fc.weight"][:1000]) and torch.equal(psd["fc.bias"], sd["fc.bias"][:1000])
    values["paper_weights_checksums"] = {
        k: [math.fsum(psd[k].double().flatten().tolist()), math.fsum(psd[k].double().abs().flatten().tolist())]
        for k in paper_only}
    values["paper_state_dict_keys"] = {
        "n_entries": len(psd), "differ_from_fid_structure": paper_only,
        "only_in_fid_structure": sorted(set(sd) - set(psd)), "only_in_paper": sorted(set(psd) - set(sd))}
    # The paper's Inception Score itself (its official preprocessing and splits) is made by
    # paper_is_reference.py.
    w = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    fname = w.url.rsplit("/", 1)[1]
    values["paper_weights_url"] = {
        "weights_enum": "torchvision.models.Inception_V3_Weights.IMAGENET1K_V1",
        "url": w.url, "file_name": fname,
        "hash_prefix": re.search(r"-([a-f0-9]*)\.", fname).group(1),
        "hash_note": "torch.hub.load_state_dict_from_url(check_hash=True) checks that the SHA-256 hex digest "
                     "of the downloaded file starts with hash_prefix, the first match of torch.hub.HASH_REGEX "
                     "r'-([a-f0-9]*)\\.' in the file name; not downloaded here",
        "num_params": w.meta["num_params"], "file_size_MB": w.meta["_file_size"],
        "builder_with_weights": "inception_v3(weights=IMAGENET1K_V1, **kw): transform_input defaults to True "
                                "unless passed (the paper code passes transform_input=False), aux_logits forced "
                                "True for loading then AuxLogits dropped if aux_logits=False was asked, "
                                "init_weights=False, num_classes=1000. With weights=None Inception3's own "
                                "default transform_input=False applies; we pass False explicitly.",
    }

    # ---- numpy legacy RandomState (torch-fidelity's IS shuffle) -----------------------------
    values.update(numpy_randomstate_checks())
    assert values["np_randomstate_2020_permutation_80"] == values["isc_shuffle_permutation_80"]

    case = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in case.items()}
    save_file(case, os.path.join(out, "case.safetensors"), metadata={"format": "pt"})
    save_file(clean_file, os.path.join(out, "clean_resize.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "values.json"), "w") as f:
        json.dump(values, f, indent=1)
        f.write("\n")
    for f in sorted(os.listdir(out)):
        print(f"wrote {os.path.join(out, f)} ({os.path.getsize(os.path.join(out, f))} bytes)")


if __name__ == "__main__":
    main()
