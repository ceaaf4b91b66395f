#!/usr/bin/env bash
# One command for the day a GPU machine is lent: build with the GPU backend, run the GPU test set
# on it, then time `ddpm bench` against PyTorch (diffusers' UNet2DModel) on the same GPU, and
# print a markdown table (paste it into docs/guides/benchmark.md).
#
#   scripts/gpu_check.sh                                   # CUDA: tests + ddpm-cifar10 at b64, b128
#   DEVICE=vulkan TORCH=0 PRESET=tiny BATCHES=2 PROFILE=dev scripts/gpu_check.sh   # on lavapipe
#
# Steps (each under what is left of the time limit; the first failure stops the script):
#   1. cargo build (profile $PROFILE) of the `ddpm` binary and the GPU test set, feature $DEVICE;
#   2. the GPU test set (crates/ddpm-gpu-tests: diffusers parity, DDIM/DDPM loops, training vs
#      Flex within 1e-3, checkpoints, f16/bf16 deviation) on the device;
#   3. for each batch in $BATCHES: `ddpm bench` forward and train step in f32, forward in f16,
#      and the same cases in PyTorch on CUDA (f16 through `model.half()`), median of $REPEATS
#      after $WARMUP warm-up iterations, each side in a fresh process;
#   4. the table: ddpm and PyTorch median ms per case and their ratio (> 1: ddpm is slower).
#
# Environment (defaults in brackets):
#   DEVICE      cuda | vulkan | wgpu | metal: the cargo feature and `--device`        [cuda]
#   PRESET      U-Net preset of the benchmark (ddpm-cifar10, mnist, tiny)      [ddpm-cifar10]
#   BATCHES     batch sizes of the benchmark                                         ["64 128"]
#   WARMUP, REPEATS   benchmark iterations per case                                  [3, 10]
#   TIME_LIMIT  seconds for the whole script; steps are killed when it runs out          [3600]
#   PROFILE     cargo profile: release for timings, dev to reuse a debug build         [release]
#   TORCH_BENCH the PyTorch model configs (MODELS of torch_unet.py); with SHARED set,
#               $SHARED/bench/torch_unet.py                [<repo>/scripts/pytorch/torch_unet.py]
#   PYTHON      interpreter with torch (CUDA build) and diffusers                      [python3]
#   TORCH       1: run the PyTorch side (needs torch_unet.py, torch, a CUDA GPU); 0: skip it [1]
#   OUT         directory for the logs and raw JSON                 [target/gpu_check-<DEVICE>]
#
# Exit status: 0 when every step passed, 1 when a test or measurement failed, 2 on a setup
# error (unknown DEVICE, missing torch_unet.py or torch), 124 when TIME_LIMIT ran out.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE="${DEVICE:-cuda}"
PRESET="${PRESET:-ddpm-cifar10}"
BATCHES="${BATCHES:-64 128}"
WARMUP="${WARMUP:-3}"
REPEATS="${REPEATS:-10}"
TIME_LIMIT="${TIME_LIMIT:-3600}"
PROFILE="${PROFILE:-release}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-1}"
OUT="${OUT:-$ROOT/target/gpu_check-$DEVICE}"

die() { echo "gpu_check: $*" >&2; exit 2; }
start=$(date +%s)
left() { echo $(( TIME_LIMIT - ($(date +%s) - start) )); }
# Runs a command under the time left; exits 124 when the limit is reached.
limited() {
  local l; l=$(left)
  (( l > 0 )) || { echo "gpu_check: TIME_LIMIT=$TIME_LIMIT s reached" >&2; exit 124; }
  local rc=0
  timeout "$l" "$@" || rc=$?
  if (( rc == 124 )); then echo "gpu_check: TIME_LIMIT=$TIME_LIMIT s reached during: $*" >&2; exit 124; fi
  return "$rc"
}
step() { echo; echo "== $* (at $(( $(date +%s) - start )) s)"; }

case "$DEVICE" in
  cuda|vulkan|wgpu|metal) ;;
  *) die "DEVICE=$DEVICE: expected cuda, vulkan, wgpu or metal" ;;
esac
case "$PRESET" in
  ddpm-cifar10) torch_model=ddpm_cifar10_32 ;;
  mnist) torch_model=mnist_28 ;;
  tiny) torch_model=tiny_16 ;;
  *) die "PRESET=$PRESET: expected ddpm-cifar10, mnist or tiny" ;;
esac
for n in $BATCHES "$WARMUP" "$REPEATS" "$TIME_LIMIT"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "expected a non-negative integer, got '$n'"
done
mkdir -p "$OUT"

# The PyTorch side needs the bench script's model configs and a CUDA torch: check before building.
if [[ -n "${SHARED:-}" ]]; then
  TORCH_BENCH="${TORCH_BENCH:-$SHARED/bench/torch_unet.py}"
else
  TORCH_BENCH="${TORCH_BENCH:-$ROOT/scripts/pytorch/torch_unet.py}"
fi
if [[ "$TORCH" == 1 ]]; then
  [[ -f "$TORCH_BENCH" ]] || die "$TORCH_BENCH not found: set TORCH_BENCH to torch_unet.py \
(the PyTorch model configs, scripts/pytorch/ in this repository) or SHARED to a folder holding \
bench/torch_unet.py, or TORCH=0 to skip the PyTorch side"
  command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found (set PYTHON, or TORCH=0)"
  torch_info="$("$PYTHON" -c 'import torch, diffusers; assert torch.cuda.is_available(), "torch sees no CUDA device"; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, {torch.cuda.get_device_name(0)}")' 2>&1)" \
    || die "PyTorch with CUDA and diffusers are needed for the comparison ($(echo "$torch_info" | tail -n 1));
  install them (e.g. $PYTHON -m pip install torch diffusers) or set TORCH=0"
else
  torch_info="not run (TORCH=0)"
fi

export CARGO_TERM_COLOR=never
status=0

step "build: ddpm and the GPU test set, --profile $PROFILE --features $DEVICE"
cd "$ROOT"
# One feature set for both packages, so Burn is compiled once; `--no-run` also builds the
# `ddpm` binary (ddpm-cli's tests need it) into target/<profile>.
cargo_gpu=(--profile "$PROFILE" --locked -p ddpm-gpu-tests -p ddpm-cli
           --features "ddpm-gpu-tests/$DEVICE,ddpm-cli/$DEVICE")
limited cargo test "${cargo_gpu[@]}" --no-run
case "$PROFILE" in dev|test) profile_dir=debug ;; *) profile_dir="$PROFILE" ;; esac
DDPM="${CARGO_TARGET_DIR:-$ROOT/target}/$profile_dir/ddpm"
[[ -x "$DDPM" ]] || { echo "gpu_check: $DDPM was not built" >&2; exit 1; }

step "GPU test set on $DEVICE"
tests="passed"
set +e
limited cargo test "${cargo_gpu[@]}" --test gpu -- --nocapture 2>&1 | tee "$OUT/gpu_tests.log"
rc=${PIPESTATUS[0]}
set -e
(( rc != 124 )) || { echo "gpu_check: TIME_LIMIT=$TIME_LIMIT s reached in the GPU tests" >&2; exit 124; }
if (( rc != 0 )) || ! grep -q "test result: ok" "$OUT/gpu_tests.log"; then
  tests="FAILED (see $OUT/gpu_tests.log)"
  status=1
fi

step "ddpm bench smoke test (tiny, every mode)"
limited "$DDPM" bench --device "$DEVICE" --preset tiny --batch 2 --steps 2 --warmup 0 --repeats 1 \
  || status=1

step "benchmark: $PRESET at batches $BATCHES"
results="$OUT/bench.tsv"
: >"$results"
torch_helper="$OUT/torch_cuda.py"
cat >"$torch_helper" <<'PY'
"""PyTorch on CUDA: one case of torch_unet.py's models, synchronised timing, JSON on stdout."""
import importlib.util, json, statistics, sys, time

path, model_name, mode, batch, warmup, repeats, precision = sys.argv[1:8]
spec = importlib.util.spec_from_file_location("torch_unet", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
base = dict(mod.DDPM_CIFAR10_32)
mod.MODELS.setdefault("tiny_16", dict(  # = ddpm-unet's tests/fixtures/unet_tiny/config.json
    base, sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")))

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

dev = torch.device("cuda")
dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[precision]
torch.manual_seed(0)
cfg = mod.MODELS[model_name]
model = UNet2DModel(**cfg).to(dev, dtype)
c, s, b = cfg["in_channels"], cfg["sample_size"], int(batch)
g = torch.Generator(device=dev).manual_seed(1)
x = torch.randn(b, c, s, s, generator=g, device=dev, dtype=dtype)
noise = torch.randn(b, c, s, s, generator=g, device=dev, dtype=dtype)
t = torch.randint(0, 1000, (b,), generator=g, device=dev)
if mode == "forward":
    model.eval()
    def step():
        with torch.no_grad():
            return model(x, t).sample.float().sum().item()
else:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x, t).sample, noise)
        loss.backward()
        opt.step()
        return loss.item()
for _ in range(int(warmup)):
    step()
times = []
for _ in range(int(repeats)):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                  "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20}))
PY

# One case: `record SIDE MODE BATCH PRECISION` appends "side mode batch precision median_ms".
record() {
  local side="$1" mode="$2" batch="$3" precision="$4" json median
  if [[ "$side" == ddpm ]]; then
    json="$(limited "$DDPM" bench --device "$DEVICE" --preset "$PRESET" --mode "$mode" \
      --batch "$batch" --precision "$precision" --warmup "$WARMUP" --repeats "$REPEATS" --json \
      2>>"$OUT/bench.err")" || { echo "ddpm bench $mode b$batch $precision failed" >&2; status=1; json='{}'; }
  else
    json="$(limited "$PYTHON" "$torch_helper" "$TORCH_BENCH" "$torch_model" "$mode" "$batch" \
      "$WARMUP" "$REPEATS" "$precision" 2>>"$OUT/bench.err")" \
      || { echo "PyTorch $mode b$batch $precision failed" >&2; status=1; json='{}'; }
  fi
  echo "$json" >>"$OUT/bench.jsonl"
  median="$(echo "$json" | sed -n 's/.*"median_ms": *\([0-9.eE+-]*\).*/\1/p')"
  echo -e "$side\t$mode\t$batch\t$precision\t${median:-n/a}" | tee -a "$results"
}
for batch in $BATCHES; do
  for case in "forward f32" "forward f16" "train f32"; do
    read -r mode precision <<<"$case"
    record ddpm "$mode" "$batch" "$precision"
    if [[ "$TORCH" == 1 ]]; then record torch "$mode" "$batch" "$precision"; fi
  done
done

step "table"
{
  echo
  echo "### \`ddpm bench\` vs PyTorch on $DEVICE: preset $PRESET, median of $REPEATS after $WARMUP warm-up"
  echo
  echo "GPU test set: $tests. PyTorch: $torch_info. Date: $(date -u +%Y-%m-%d)."
  echo
  echo "| case | ddpm median ms | PyTorch median ms | ddpm/PyTorch |"
  echo "|---|---:|---:|---:|"
  for batch in $BATCHES; do
    for case in "forward f32" "forward f16" "train f32"; do
      read -r mode precision <<<"$case"
      d="$(awk -F'\t' -v m="$mode" -v b="$batch" -v p="$precision" '$1=="ddpm" && $2==m && $3==b && $4==p {print $5}' "$results")"
      t="$(awk -F'\t' -v m="$mode" -v b="$batch" -v p="$precision" '$1=="torch" && $2==m && $3==b && $4==p {print $5}' "$results")"
      name="$mode"; [[ "$mode" == train ]] && name="train step"
      awk -v n="$name b$batch $precision" -v d="${d:-n/a}" -v t="${t:-n/a}" 'BEGIN {
        ds = (d + 0 > 0) ? sprintf("%.1f", d) : "n/a"; ts = (t + 0 > 0) ? sprintf("%.1f", t) : "n/a"
        r = (d + 0 > 0 && t + 0 > 0) ? sprintf("%.2f", d / t) : "n/a"
        printf "| %s | %s | %s | %s |\n", n, ds, ts, r }'
    done
  done
} | tee "$OUT/table.md"
echo
echo "gpu_check: done in $(( $(date +%s) - start )) s; logs and raw JSON in $OUT"
exit "$status"
