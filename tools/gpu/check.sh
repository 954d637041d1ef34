#!/usr/bin/env bash
# The prepared device check: one call on a GPU machine (or, first, on the CPU here) that checks and
# times the CUDA path, and writes every figure to $OUT/gpu-check.json and gpu-check.md.
#
#   bash tools/cuda/build.sh                       # here: build + pack gpu-pack/*.xz
#   bash tools/gpu/check.sh --prepare              # here: copy 400 photos into gpu-pack/data
#   bash tools/gpu/check.sh --device cpu           # here: the whole check on the CPU (also in CI)
#   bash tools/gpu/check.sh --device cuda          # there: one call, carrying gpu-pack/
#
# Steps: (1) `fid` of two photo folders with formula Inception weights on the CPU and on the device
# (FIDs must agree within 1e-3 relative; images/s of both); (2) the quickstart grid on the device,
# its FIDs against the CPU table (gpu-pack/quickstart-cpu.json, written by a `--device cpu` run,
# else computed here) within 10% relative; (3) one `ours` unlearning step (batch 4) and one
# inpainting batch (8) of an MAE-base-sized model at 224 px, images/s and peak GPU memory;
# (4) `selfcheck grads`: every trainable tensor of every method gets a gradient on the device;
# (5) the summary. Exit code 0 when every check passed, 1 otherwise.
#
# Options: --device cpu|cuda (default cuda), --bin DIR (folder with i2i-unlearn and mae_bench,
# plain or .xz; default gpu-pack/, else target dirs), --data DIR (with a/ and b/ photo folders;
# default gpu-pack/data, prepared on the fly from ../shared/data), --out DIR (default $OUT or
# gpu-check-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DEVICE=cuda BIN_DIR="" DATA="" OUTDIR=${OUT:-$ROOT/gpu-check-out} PREPARE=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --bin) BIN_DIR=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --out) OUTDIR=$2; shift 2 ;;
        --prepare) PREPARE=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $DEVICE == cpu || $DEVICE == cuda ]] || { echo "check.sh: --device cpu|cuda, got $DEVICE" >&2; exit 2; }

# Photos: 200 Tiny ImageNet val images in a/, 200 MiniPlaces val images in b/ (≈ 2 MB).
prepare_data() {
    local dst=$1 src=$ROOT/../shared/data
    [[ -d $src ]] || { echo "check.sh: no photos: $src is absent and no --data was given" >&2; exit 2; }
    mkdir -p "$dst/a" "$dst/b"
    find "$src/tiny-imagenet-200/val/images" -name '*.JPEG' | sort | head -200 | while read -r f; do
        cp "$f" "$dst/a/$(basename "${f%.JPEG}").jpg"; done
    find "$src/miniplaces/data/images/val" -name '*.jpg' | sort | head -200 | while read -r f; do
        cp "$f" "$dst/b/"; done
}
if [[ $PREPARE == 1 ]]; then
    rm -rf "$ROOT/gpu-pack/data"; prepare_data "$ROOT/gpu-pack/data"
    echo "check.sh: $(find "$ROOT/gpu-pack/data" -type f | wc -l) photos in gpu-pack/data ($(du -sh "$ROOT/gpu-pack/data" | cut -f1))"
    exit 0
fi

mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu-check.log
: > "$LOG"
say() { echo "check: $*" | tee -a "$LOG" >&2; }

# The binaries: unpacked from gpu-pack/*.xz, or built ones.
TOOLS=$OUTDIR/bin
mkdir -p "$TOOLS"
find_bin() {
    local name=$1 target=${CARGO_TARGET_DIR:-$HOME/.cache/i2i-unlearn-target}
    local built=("$target/release" "$target/release/examples" "$ROOT/target/release" "$ROOT/target/release/examples")
    local dirs=("$BIN_DIR" "$ROOT/gpu-pack" "${built[@]}")
    # The CPU check uses the CPU build (a CUDA build does not start without the driver).
    [[ $DEVICE == cpu ]] && dirs=("$BIN_DIR" "${built[@]}")
    for d in "${dirs[@]}"; do
        [[ -n $d ]] || continue
        if [[ -f $d/$name.xz ]]; then xz -dc "$d/$name.xz" > "$TOOLS/$name" && chmod +x "$TOOLS/$name" && echo "$TOOLS/$name" && return; fi
        if [[ -x $d/$name ]]; then echo "$d/$name"; return; fi
    done
    echo "check.sh: no $name binary (build with cargo or tools/cuda/build.sh, or give --bin)" >&2
    exit 2
}
BIN=$(find_bin i2i-unlearn) || exit 2
BENCH=$(find_bin mae_bench) || exit 2

# CUDA libraries: the driver's libcuda and the CUDA 13 libraries of a Python (PyTorch) install.
if [[ $DEVICE == cuda ]]; then
    for py in python3 python; do
        libs=$($py - 2>/dev/null <<'EOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})))
EOF
) && [[ -n $libs ]] && break
    done
    export LD_LIBRARY_PATH="${libs:-}:${LD_LIBRARY_PATH:-}"
    missing=$(ldd "$BIN" | awk '/not found/ {print $1}' | tr '\n' ' ')
    if [[ -n $missing ]]; then
        echo "check.sh: the CUDA binary cannot find: $missing— install the NVIDIA driver (libcuda.so.1) and the CUDA 13 libraries (pip install nvidia-cublas nvidia-curand nvidia-cuda-runtime nvidia-cuda-nvrtc, or a CUDA 13 toolkit) and put their lib folders on LD_LIBRARY_PATH" | tee -a "$LOG" >&2
        exit 2
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$LOG" 2>&1 || true
fi
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$(nproc)}
say "device $DEVICE, binary $BIN, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

if [[ -z $DATA ]]; then
    if [[ -d $ROOT/gpu-pack/data/a ]]; then DATA=$ROOT/gpu-pack/data; else DATA=$OUTDIR/data; rm -rf "$DATA"; prepare_data "$DATA"; fi
fi
N_IMAGES=$(( $(find "$DATA/a" -type f | wc -l) + $(find "$DATA/b" -type f | wc -l) ))
FAILED=0
json=()
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')" 2>/dev/null || echo "$2 - $1" | bc; }

# (1) FID on the CPU and on the device, formula weights (no download).
W=$OUTDIR/inception-formula.safetensors
"$BIN" --quiet selfcheck inception-weights --out "$W" >> "$LOG" 2>&1
fid() {
    local dev=$1 t0 t1 v
    t0=$(now)
    v=$("$BIN" --quiet fid "$DATA/a" "$DATA/b" --weights "$W" --device "$dev" 2>>"$LOG" | awk '/^FID:/ {print $2}')
    t1=$(now)
    echo "$v $(secs "$t0" "$t1")"
}
read -r FID_CPU T_CPU <<< "$(fid cpu)"
IPS_CPU=$(python3 -c "print(round($N_IMAGES / $T_CPU, 2))")
say "fid cpu: $FID_CPU in $T_CPU s ($IPS_CPU img/s, whole command, $N_IMAGES images)"
json+=("\"fid_cpu\": {\"value\": ${FID_CPU:-null}, \"seconds\": $T_CPU, \"images_per_s\": $IPS_CPU}")
if [[ $DEVICE == cuda ]]; then
    read -r FID_DEV T_DEV <<< "$(fid cuda)"
    IPS_DEV=$(python3 -c "print(round($N_IMAGES / $T_DEV, 2))")
    REL=$(python3 -c "a,b=float('${FID_CPU:-nan}'),float('${FID_DEV:-nan}'); print(abs(a-b)/max(abs(a),1e-12))")
    OK=$(python3 -c "print('true' if $REL <= 1e-3 else 'false')")
    [[ $OK == true ]] || FAILED=1
    say "fid cuda: $FID_DEV in $T_DEV s ($IPS_DEV img/s); relative difference to the CPU $REL (≤ 1e-3: $OK)"
    json+=("\"fid_cuda\": {\"value\": ${FID_DEV:-null}, \"seconds\": $T_DEV, \"images_per_s\": $IPS_DEV, \"rel_diff_to_cpu\": $REL, \"ok\": $OK}")
fi

# (2) The quickstart grid on the device; its FIDs against the CPU table.
QS=$OUTDIR/quickstart-$DEVICE
rm -rf "$QS"
t0=$(now)
JOBS=(); [[ $DEVICE == cuda ]] && JOBS=(--jobs 1)
"$BIN" --quiet run experiments/quickstart.yaml --device "$DEVICE" --output "$QS" --cache-dir "$OUTDIR/cache-$DEVICE" --no-samples "${JOBS[@]}" >> "$LOG" 2>&1
rc=$?
T_QS=$(secs "$t0" "$(now)")
# The FIDs of a results folder, from its cell records (present with or without the report feature).
fids() { python3 - "$1" <<'EOF'
import glob, json, sys
out = {}
for f in glob.glob(sys.argv[1] + "/cells/*.json"):
    for r in json.load(open(f))["rows"]:
        if r["metric"] == "fid":
            out[r["method"] + "/" + r["set"]] = r["value"]
print(json.dumps(out, sort_keys=True))
EOF
}
if [[ $rc != 0 || ! -d $QS/cells ]]; then
    FAILED=1; say "quickstart on $DEVICE failed (exit $rc; see $LOG)"
    json+=("\"quickstart\": {\"ok\": false, \"seconds\": $T_QS}")
else
    say "quickstart on $DEVICE: $T_QS s"
    if [[ $DEVICE == cuda ]]; then
        REF=$ROOT/gpu-pack/quickstart-cpu.json
        if [[ ! -f $REF ]]; then
            "$BIN" --quiet run experiments/quickstart.yaml --device cpu --output "$OUTDIR/quickstart-cpu" --cache-dir "$OUTDIR/cache-cpu" --no-samples >> "$LOG" 2>&1
            REF=$OUTDIR/quickstart-cpu.json
            fids "$OUTDIR/quickstart-cpu" > "$REF"
        fi
        fids "$QS" > "$OUTDIR/quickstart-cuda.json"
        CMP=$(python3 - "$REF" "$OUTDIR/quickstart-cuda.json" <<'EOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
worst = max(abs(a[k] - b[k]) / abs(a[k]) for k in a if k in b)
print(f"{worst:.4f} {'true' if worst <= 0.10 and a.keys() == b.keys() else 'false'}")
EOF
)
        read -r WORST OK <<< "$CMP"
        [[ $OK == true ]] || FAILED=1
        say "quickstart FIDs cuda vs cpu: worst relative difference $WORST (≤ 0.10: $OK)"
        json+=("\"quickstart\": {\"seconds\": $T_QS, \"worst_rel_fid_diff_to_cpu\": $WORST, \"ok\": $OK}")
    else
        fids "$QS" > "$OUTDIR/quickstart-cpu.json"
        [[ -d $ROOT/gpu-pack ]] && cp "$OUTDIR/quickstart-cpu.json" "$ROOT/gpu-pack/quickstart-cpu.json"
        json+=("\"quickstart\": {\"seconds\": $T_QS, \"ok\": true}")
    fi
    say "quickstart FIDs on $DEVICE: $(fids "$QS")"
fi

# (3) MAE-base at 224 px: one inpainting batch of 8, one `ours` step of 4 + 4 images.
gpu_mem_peak() {  # runs "$@" while sampling the GPU's used memory; prints the peak in MiB
    local peak=0 m pid
    "$@" > "$OUTDIR/bench.out" 2>>"$LOG" &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
        [[ -n $m && $m -gt $peak ]] && peak=$m
        sleep 0.2
    done
    wait $pid
    echo "$peak"
}
for what in forward unlearn; do
    b=8; [[ $what == unlearn ]] && b=4
    if [[ $DEVICE == cuda ]]; then
        PEAK=$(gpu_mem_peak "$BENCH" --size base --batch $b --iters 3 --what $what --device cuda)
    else
        "$BENCH" --size base --batch $b --iters 1 --what $what --device cpu > "$OUTDIR/bench.out" 2>>"$LOG"; PEAK=null
    fi
    line=$(tail -1 "$OUTDIR/bench.out")
    if [[ $line == \{* ]]; then
        say "mae-base $what batch $b on $DEVICE: $line; peak GPU memory ${PEAK} MiB"
        json+=("\"mae_base_$what\": {\"result\": $line, \"peak_gpu_mib\": $PEAK}")
    else
        FAILED=1; say "mae-base $what on $DEVICE failed (see $LOG)"
        json+=("\"mae_base_$what\": {\"ok\": false}")
    fi
done

# (3b) Palette's Places2 UNet at 256 px: one forward (one of the evaluation's 2000 sampling steps)
# and the paper's evaluation time it implies (10,000 images x 2000 steps).
PBENCH=$(find_bin palette_bench) || exit 2
pb=4; pi=3; [[ $DEVICE == cpu ]] && { pb=1; pi=1; }
if [[ $DEVICE == cuda ]]; then
    PEAK=$(gpu_mem_peak "$PBENCH" --size base --batch $pb --iters $pi --what forward --device cuda)
else
    "$PBENCH" --size base --batch $pb --iters $pi --what forward --device cpu > "$OUTDIR/bench.out" 2>>"$LOG"; PEAK=null
fi
line=$(tail -1 "$OUTDIR/bench.out")
if [[ $line == \{* ]]; then
    HOURS=$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(round(10000 * 2000 / r["images_per_s"] / 3600, 1))' "$line")
    say "palette-base forward batch $pb on $DEVICE: $line; peak GPU memory ${PEAK} MiB; the paper's evaluation ≈ $HOURS h"
    json+=("\"palette_base_forward\": {\"result\": $line, \"peak_gpu_mib\": $PEAK, \"paper_eval_hours\": $HOURS}")
else
    FAILED=1; say "palette-base forward on $DEVICE failed (see $LOG)"
    json+=("\"palette_base_forward\": {\"ok\": false}")
fi

# (4) Gradients of every method on the device.
if "$BIN" --quiet selfcheck grads --device "$DEVICE" > "$OUTDIR/grads.jsonl" 2>>"$LOG"; then G_OK=true; else G_OK=false; FAILED=1; fi
say "selfcheck grads on $DEVICE: $G_OK ($(wc -l < "$OUTDIR/grads.jsonl") family × method steps)"
json+=("\"grads\": {\"ok\": $G_OK, \"methods\": [$(paste -sd, "$OUTDIR/grads.jsonl")]}")

# (5) The summary.
{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"device\": \"$DEVICE\", \"cores\": $(nproc),"
    echo "  \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\","
    echo "  \"gpu\": \"$( [[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)\","
    echo "  \"images\": $N_IMAGES, \"passed\": $([[ $FAILED == 0 ]] && echo true || echo false),"
    (IFS=$'\n'; echo "${json[*]}" | sed 's/^/  /; $!s/$/,/')
    echo "}"
} > "$OUTDIR/gpu-check.json"
{
    echo "# Device check ($DEVICE), $(date -u +%Y-%m-%d)"
    echo
    echo '```'
    cat "$LOG" | grep '^check:' | sed 's/^check: //'
    echo '```'
} > "$OUTDIR/gpu-check.md"
say "wrote $OUTDIR/gpu-check.json and gpu-check.md; $([[ $FAILED == 0 ]] && echo 'all checks passed' || echo 'SOME CHECKS FAILED')"
exit $FAILED
