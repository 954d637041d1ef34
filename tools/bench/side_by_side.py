"""What the side-by-side benchmark scripts (mage_vs_official.py, palette_vs_official.py) share:
the CPU line, resident memory, running one measurement of the official side in a fresh process
(`--child`) and one of ours (an example binary), both answering with a JSON last line."""
import json, os, resource, subprocess, sys


def cpu_line():
    """(model name, logical CPUs, the SIMD instruction sets present)."""
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [x for x in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                       "avx512_bf16", "amx_tile") if x in flags]
    return model, os.cpu_count(), isa


def vm_rss_mib():
    try:
        with open("/proc/self/status") as f:
            return next(float(l.split()[1]) / 1024.0 for l in f if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return float("nan")


def last_json(cmd, label, env=None):
    """Run `cmd`; its last stdout line as JSON, or exit with its output on failure."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit(f"{label} failed: {' '.join(cmd)}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_child(script, a, what, batch, iters, extra=()):
    """One official measurement: `script --child what` in a fresh process."""
    cmd = [sys.executable, os.path.abspath(script), "--child", what, "--size", a.size, "--batch", str(batch),
           "--iters", str(iters), "--threads", str(a.threads), "--official", a.official, *extra]
    return last_json(cmd, f"official {what} (batch {batch})")


def run_ours(a, exe, what, batch, iters):
    """One measurement of ours (None without a binary: --no-ours)."""
    if exe is None:
        return None
    env = {**os.environ, "RAYON_NUM_THREADS": str(a.threads), "CANDLE_NUM_THREADS": "1"}
    cmd = [exe, "--size", a.size, "--what", what, "--batch", str(batch), "--iters", str(iters)]
    return last_json(cmd, f"ours {what} (batch {batch})", env)


def build_ours(a, root, example):
    """`cargo build --release --example example` into a.target_dir; its path (None with --no-ours)."""
    if a.no_ours:
        return None
    subprocess.run(["cargo", "build", "--release", "--example", example], cwd=root, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": a.target_dir})
    return os.path.join(a.target_dir, "release", "examples", example)


def print_child(r, import_rss_mib):
    """A child's answer: its figures, peak RSS, the RSS before any model, the CPU model."""
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    r["import_rss_mib"] = import_rss_mib
    r["cpu"] = cpu_line()[0]
    print(json.dumps(r))


def fmt(v, spec):
    return "-" if v is None else format(v, spec)
