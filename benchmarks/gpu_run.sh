#!/usr/bin/env bash
# The GPU checks and benchmarks in one prepared run, for a lent GPU machine (jax with
# CUDA and torch already installed there). Results and logs go to $OUT/r/ and are packed
# into $OUT/gpu-results.tar.gz.  Usage: OUT=dir bash benchmarks/gpu_run.sh
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: OUT=dir bash benchmarks/gpu_run.sh"
  echo "Runs the GPU gradient checks and every benchmark on the first GPU, writing logs and"
  echo "tables to \$OUT/r/ (default OUT=gpu-out) and packing them into \$OUT/gpu-results.tar.gz."
  exit 0
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
R="$OUT/r"
mkdir -p "$R"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
B=benchmarks
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import jax, jaxlib; print('jax', jax.__version__, jaxlib.__version__, jax.devices())"
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
} > "$R/env.txt" 2>&1
cat "$R/env.txt"
run() {  # name timeout command...
  local name=$1 t=$2; shift 2
  local s=$SECONDS
  timeout "$t" "$@" > "$R/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - s)) s"
}
# One lease holds about 8 minutes of commands: the default run is the checks and the
# questions still open (timeouts sum to under 8 minutes); FULL=1 adds every benchmark.
# correctness on the GPU: float64 gradient check of a composed model (per-layer rows),
# float32 at 'highest'
run gradcheck-f64-layers 90 $PY scripts/gradcheck.py --sizes 5,3 --json --dtype float64 \
  --layers dense:16,tanh,layernorm,dropout:0.2,dense:16,gelu
JAX_DEFAULT_MATMUL_PRECISION=highest run gradcheck-f32-highest 90 \
  $PY scripts/gradcheck.py --sizes 784,256,10 --activation relu --dtype float32 --json
# the autodiff epoch compiled in 19-22 s at 'highest' on the H200 against 2.2 s for the
# manual one: the same compile with GPU autotuning off says how much of it is autotuning
run compile-highest 100 $PY $B/bench_compile.py --precision highest --models L --reps 1 \
  --json "$R/compile-highest.json" --markdown "$R/compile-highest.md"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" run compile-highest-noautotune 100 \
  $PY $B/bench_compile.py --precision highest --models L --reps 1 \
  --json "$R/compile-highest-noautotune.json" --markdown "$R/compile-highest-noautotune.md"
# the 784-1024-1024-10 epoch of 61,440 examples (target <= 20 ms), float32 at 'highest'
run train-L-f32-highest 90 $PY $B/bench_train.py --no-cpu-peers --no-peers --reps 5 \
  --models L --batches 128,1024 --examples-l 61440 --precision highest \
  --json "$R/train-L-f32-highest.json" --markdown "$R/train-L-f32-highest.md"
# a population filling the device: K members of 784-128-10 in one program
run population 100 $PY $B/bench_population.py --members 1,64,256 --reps 2 \
  --examples 12800 --json "$R/population.json" --markdown "$R/population.md"
if [[ "${FULL:-0}" == "1" ]]; then
  run gradcheck-f32-default 120 $PY scripts/gradcheck.py --sizes 784,256,10 --activation relu \
    --dtype float32 --json
  for mode in "f32-highest --precision highest" "f32-default --precision default" \
              "bf16 --compute-dtype bfloat16"; do
    set -- $mode
    run "train-$1" 200 $PY $B/bench_train.py --no-cpu-peers --reps 5 --examples-l 61440 \
      "${@:2}" --json "$R/train-$1.json" --markdown "$R/train-$1.md"
  done
  run peak 120 $PY $B/bench_peak.py --reps 5 --json "$R/peak.json" --markdown "$R/peak.md"
  run grads 150 $PY $B/bench_grads.py --reps 5 --json "$R/grads.json" --markdown "$R/grads.md"
  run scaling 150 $PY $B/bench_scaling.py --reps 3 --plot "$R/scaling.png" \
    --json "$R/scaling.json" --markdown "$R/scaling.md"
fi
tar -czf "$OUT/gpu-results.tar.gz" -C "$OUT" r
cat "$R"/*.md
ls -la "$R"
