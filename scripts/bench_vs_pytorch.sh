#!/usr/bin/env bash
# Side-by-side speed comparison: `ddpm bench` against PyTorch + diffusers' UNet2DModel on the CPU.
#
#   scripts/bench_vs_pytorch.sh --preset mnist                  # forward b1, forward b8, train b8, train b64
#   scripts/bench_vs_pytorch.sh --preset mnist-small            # the README's main job, same cases
#   scripts/bench_vs_pytorch.sh --preset ddpm-cifar10 --out cmp.json
#   scripts/bench_vs_pytorch.sh --preset tiny --warmup 1 --repeats 1 --max-wait 0   # smoke test
#
# For every case (mode x batch) it runs, one after the other, in fresh processes:
#   1. `ddpm bench --preset P --mode M --batch B --json` (random weights, dropout 0), and
#   2. the same U-Net in PyTorch through the `worker()` of bench/torch_unet.py (diffusers
#      UNet2DModel, random weights, forward under no_grad; train step = forward + MSE +
#      backward + Adam), with the same warm-up and repeat counts and thread count,
# then prints a markdown table: median ms of both, the ratio ddpm/PyTorch (> 1: ddpm is
# slower), and both processes' peak RSS. For mnist and mnist-small it also times a train step at b64 and
# reports the training throughput of both in images/s (`--throughput-batch`).
#
# Both sides use `--threads` CPU threads (default 2): RAYON_NUM_THREADS for ddpm (its Flex
# backend and kernels run on rayon), torch.set_num_threads + OMP/MKL_NUM_THREADS for PyTorch.
# The machine may be shared: before each measurement the script waits (at most --max-wait
# seconds) for the other processes to go quiet, and the table records the load it saw (cores
# busy before each side); compare ratios from one session, not absolute numbers across days.
#
# Options (defaults in brackets):
#   --preset P            ddpm-cifar10 | mnist | mnist-small | tiny | ddpm-256       [mnist]
#   --cases "M:B ..."     modes forward|train with batches      ["forward:1 forward:8 train:8"]
#   --throughput-batch N  extra train case at batch N, reported in images/s; 0 = none
#                         [64 for mnist and mnist-small, 0 otherwise]
#   --warmup N            untimed iterations per case, both sides                       [2]
#   --repeats N           timed iterations per case (median reported), both sides       [7]
#   --threads N           CPU threads of both sides                                     [2]
#   --max-wait S          seconds to wait for a quiet machine before each measurement  [60]
#   --device D            ddpm's --device (the PyTorch side is always the CPU)       [flex]
#   --out FILE            also write every raw measurement and the environment as JSON
#
# Environment:
#   DDPM_BIN      the ddpm binary [target/release/ddpm; built with
#                 `cargo build --release -p ddpm-cli` if it does not exist]
#   TORCH_BENCH   path of torch_unet.py [scripts/pytorch/torch_unet.py]
#   TORCH_PY      interpreter with torch and diffusers installed, e.g. /work/torchenv/bin/python
#                 [$PYTHON, else python3]
#   PYTHON        the same (older name; TORCH_PY wins when both are set)
#
# PyTorch is needed only here (`pip install torch diffusers`); never make tests or CI depend
# on it. Exit status: 0 on success, 2 on a usage or setup error (torch missing, ...), 1 when
# a measurement fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${TORCH_PY:-${PYTHON:-python3}}"
TORCH_BENCH="${TORCH_BENCH:-$ROOT/scripts/pytorch/torch_unet.py}"

die() { echo "bench_vs_pytorch: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

preset=mnist cases="forward:1 forward:8 train:8" tput_batch="" warmup=2 repeats=7
threads=2 max_wait=60 device=flex out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset="${2:?--preset needs a value}"; shift 2 ;;
    --cases) cases="${2:?--cases needs a value}"; shift 2 ;;
    --throughput-batch) tput_batch="${2:?--throughput-batch needs a value}"; shift 2 ;;
    --warmup) warmup="${2:?--warmup needs a value}"; shift 2 ;;
    --repeats) repeats="${2:?--repeats needs a value}"; shift 2 ;;
    --threads) threads="${2:?--threads needs a value}"; shift 2 ;;
    --max-wait) max_wait="${2:?--max-wait needs a value}"; shift 2 ;;
    --device) device="${2:?--device needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# ddpm preset -> model name for the PyTorch side (the first two are torch_unet.py's own).
case "${preset//_/-}" in
  ddpm-cifar10|ddpm-cifar10-32|cifar10) preset=ddpm-cifar10 torch_model=ddpm_cifar10_32 ;;
  mnist) preset=mnist torch_model=mnist_28 ;;
  mnist-small) preset=mnist-small torch_model=mnist_small ;;
  tiny) preset=tiny torch_model=tiny_16 ;;
  ddpm-256) preset=ddpm-256 torch_model=ddpm_256 ;;
  *) die "unknown --preset $preset (ddpm-cifar10, mnist, mnist-small, tiny or ddpm-256)" ;;
esac
[[ -n "$tput_batch" ]] || { [[ $preset == mnist || $preset == mnist-small ]] && tput_batch=64 || tput_batch=0; }
for n in "$warmup" "$repeats" "$threads" "$tput_batch" "$max_wait"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "expected a non-negative integer, got '$n'"
done
(( repeats >= 1 )) || die "--repeats must be at least 1"
(( threads >= 1 )) || die "--threads must be at least 1"
case_list=()
for c in $cases; do
  [[ "$c" =~ ^(forward|train):[1-9][0-9]*$ ]] || die "bad case '$c' in --cases (want forward:B or train:B)"
  case_list+=("$c")
done
(( tput_batch == 0 )) || case_list+=("train:$tput_batch")
(( ${#case_list[@]} > 0 )) || die "no cases to run"

# --- PyTorch side: present and importable? -------------------------------------------------
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found (set TORCH_PY to an interpreter with torch)"
[[ -f "$TORCH_BENCH" ]] || die "torch_unet.py not found at $TORCH_BENCH (set TORCH_BENCH)"
if ! torch_info="$("$PYTHON" -c 'import torch, diffusers; print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, MKL {torch.backends.mkl.is_available()}, oneDNN {torch.backends.mkldnn.is_available()}")' 2>&1)"; then
  echo "$torch_info" | tail -n 3 >&2
  die "PyTorch and diffusers are not importable with '$PYTHON'. Install them first, e.g.
    $PYTHON -m pip install torch diffusers safetensors
  (or point TORCH_PY at a virtual environment that has them, e.g. TORCH_PY=/work/torchenv/bin/python)."
fi

# --- ddpm side: the binary ----------------------------------------------------------------
if [[ -n "${DDPM_BIN:-}" ]]; then
  [[ -x "$DDPM_BIN" ]] || die "DDPM_BIN=$DDPM_BIN is not an executable"
else
  DDPM_BIN="$ROOT/target/release/ddpm"
  if [[ ! -x "$DDPM_BIN" ]]; then
    echo "bench_vs_pytorch: building $DDPM_BIN (cargo build --release -p ddpm-cli)" >&2
    (cd "$ROOT" && cargo build --release -p ddpm-cli) || die "cargo build failed"
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
helper="$work/helper.py"
records="$work/records.tsv"
: >"$records"

# Helper: `load MAX_WAIT` waits for a quiet machine and prints the cores busy;
# `torch MODEL MODE BATCH WARMUP REPEATS THREADS` runs one PyTorch measurement and prints JSON;
# `table PRESET RECORDS OUT ...` prints the markdown table.
cat >"$helper" <<'PY'
import importlib.util, json, os, platform, subprocess, sys, time

def load_bench(path):
    spec = importlib.util.spec_from_file_location("torch_unet", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # no torch import at module level
    # ddpm's other presets, as diffusers UNet2DModel configs (DDPM-style like torch_unet's).
    base = dict(mod.DDPM_CIFAR10_32)
    mod.MODELS.setdefault("tiny_16", dict(  # = ddpm-unet's tests/fixtures/unet_tiny/config.json
        base, sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")))
    mod.MODELS.setdefault("ddpm_256", dict(  # google/ddpm-celebahq-256's config
        base, sample_size=256, block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4))
    return mod

cmd = sys.argv[1]
if cmd == "load":
    mod = load_bench(os.environ["TORCH_BENCH"])
    max_wait = float(sys.argv[2])
    busy = mod.wait_for_idle(max_wait)[1] if max_wait > 0 else mod.cpu_busy(1.0)
    print(f"{busy:.2f}")
elif cmd == "torch":
    mod = load_bench(os.environ["TORCH_BENCH"])
    m, mode, b, w, r, th = sys.argv[2:8]
    print(json.dumps(mod.worker(m, mode, int(b), int(w), int(r), int(th))))
elif cmd == "table":
    preset, records, out = sys.argv[2:5]
    tput_batch, torch_info, ddpm_bin, threads = int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
    runs = {}
    for line in open(records):
        side, case, load, js = line.rstrip("\n").split("\t", 3)
        r = json.loads(js)
        r["other_load_before"] = float(load)
        runs.setdefault(case, {})[side] = r

    def f(v, spec):
        return "n/a" if v is None else format(v, spec)

    first = next(iter(runs.values()))
    print(f"\n### ddpm vs PyTorch: preset {preset} ({first['torch'].get('params', 0):,} parameters), "
          f"{threads} threads, median of {first['ddpm']['repeats']} after {first['torch']['warmup']} warm-up\n")
    print("| case | ddpm median ms | PyTorch median ms | ddpm/PyTorch | ddpm peak RSS MB"
          " | PyTorch peak RSS MB (import) | load before ddpm/torch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case, s in runs.items():
        d, t = s["ddpm"], s["torch"]
        mode, b = case.split(":")
        name = f"{'train step' if mode == 'train' else mode} b{b}"
        print(f"| {name} | {d['median_ms']:.1f} | {t['median_ms']:.1f} | {d['median_ms'] / t['median_ms']:.2f} "
              f"| {f(d.get('peak_rss_mb'), '.0f')} | {t['peak_rss_mb']:.0f} ({t['rss_after_import_mb']:.0f}) "
              f"| {d['other_load_before']:.1f} / {t['other_load_before']:.1f} |")
    key = f"train:{tput_batch}"
    if tput_batch and key in runs:
        d, t = runs[key]["ddpm"], runs[key]["torch"]
        di, ti = tput_batch * 1e3 / d["median_ms"], tput_batch * 1e3 / t["median_ms"]
        print(f"\nTraining throughput at b{tput_batch}: ddpm {di:.1f} images/s, PyTorch {ti:.1f} images/s "
              f"(ddpm/PyTorch {di / ti:.2f}).")
    print(f"\nddpm/PyTorch > 1: ddpm is slower. PyTorch: {torch_info}; its peak RSS includes what "
          "`import torch, diffusers` alone takes (in brackets). 'load before' = cores busy with other "
          "processes just before each side ran (> 0.3: that number is pessimistic).")
    contended = [c for c, s in runs.items() if any(x["other_load_before"] > 0.3 for x in s.values())]
    if contended:
        print(f"WARNING: the machine was busy before {', '.join(contended)}: rerun on a quiet machine.")
    if out != "-":
        try:
            cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        except Exception:
            cpu = platform.machine()
        try:
            rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=os.path.dirname(os.path.abspath(ddpm_bin))).stdout.strip()
        except Exception:
            rev = ""
        env = {"preset": preset, "threads": int(threads), "pytorch": torch_info, "ddpm_bin": ddpm_bin,
               "git_rev": rev, "cpu_model": cpu, "cpu_count": os.cpu_count(),
               "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(out, "w") as fh:
            json.dump({"env": env, "cases": runs}, fh, indent=1)
            fh.write("\n")
        print(f"raw measurements -> {out}")
PY
export TORCH_BENCH

echo "bench_vs_pytorch: preset $preset, cases ${case_list[*]}, $warmup warm-up + $repeats timed, $threads threads" >&2
echo "bench_vs_pytorch: ddpm = $DDPM_BIN ($device); PyTorch = $torch_info" >&2
for c in "${case_list[@]}"; do
  mode="${c%%:*}" batch="${c##*:}"

  load="$("$PYTHON" "$helper" load "$max_wait")"
  echo "bench_vs_pytorch: ddpm    $mode b$batch (other load $load)" >&2
  if ! ddpm_out="$(RAYON_NUM_THREADS="$threads" "$DDPM_BIN" bench --preset "$preset" --mode "$mode" \
      --batch "$batch" --warmup "$warmup" --repeats "$repeats" --device "$device" --json)"; then
    echo "bench_vs_pytorch: ddpm bench failed for $mode b$batch" >&2; exit 1
  fi
  line="$(grep '^{' <<<"$ddpm_out" | tail -n 1)" || { echo "bench_vs_pytorch: no JSON from ddpm bench" >&2; exit 1; }
  printf 'ddpm\t%s\t%s\t%s\n' "$c" "$load" "$line" >>"$records"

  load="$("$PYTHON" "$helper" load "$max_wait")"
  echo "bench_vs_pytorch: PyTorch $mode b$batch (other load $load)" >&2
  if ! torch_out="$(OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$PYTHON" "$helper" torch \
      "$torch_model" "$mode" "$batch" "$warmup" "$repeats" "$threads")"; then
    echo "bench_vs_pytorch: the PyTorch measurement failed for $mode b$batch" >&2; exit 1
  fi
  printf 'torch\t%s\t%s\t%s\n' "$c" "$load" "$(tail -n 1 <<<"$torch_out")" >>"$records"
done

"$PYTHON" "$helper" table "$preset" "$records" "${out:--}" "$tput_batch" "$torch_info" "$DDPM_BIN" "$threads"
