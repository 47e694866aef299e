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
# correctness on the GPU: float64 gradient check, float32 at 'highest' and at 'default'
run gradcheck-f64 120 $PY scripts/gradcheck.py --sizes 5,16,16,3 --activation tanh --dtype float64 --json
JAX_DEFAULT_MATMUL_PRECISION=highest run gradcheck-f32-highest 120 \
  $PY scripts/gradcheck.py --sizes 784,256,10 --activation relu --dtype float32 --json
run gradcheck-f32-default 120 $PY scripts/gradcheck.py --sizes 784,256,10 --activation relu --dtype float32 --json
# training throughput: float32 at highest and default precision, and bfloat16 compute
for mode in "f32-highest --precision highest" "f32-default --precision default" \
            "bf16 --compute-dtype bfloat16"; do
  set -- $mode
  run "train-$1" 200 $PY $B/bench_train.py --no-cpu-peers --reps 5 --examples-l 61440 \
    "${@:2}" --json "$R/train-$1.json" --markdown "$R/train-$1.md"
done
# the autodiff epoch compiled in 19-22 s at 'highest' on the H200 against 2.2 s for the
# manual one: the same compile with GPU autotuning off says how much of it is autotuning
run compile-highest 240 $PY $B/bench_compile.py --precision highest \
  --json "$R/compile-highest.json" --markdown "$R/compile-highest.md"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" run compile-highest-noautotune 240 \
  $PY $B/bench_compile.py --precision highest \
  --json "$R/compile-highest-noautotune.json" --markdown "$R/compile-highest-noautotune.md"
run peak 120 $PY $B/bench_peak.py --reps 5 --json "$R/peak.json" --markdown "$R/peak.md"
run grads 150 $PY $B/bench_grads.py --reps 5 --json "$R/grads.json" --markdown "$R/grads.md"
run scaling 150 $PY $B/bench_scaling.py --reps 3 --plot "$R/scaling.png" \
  --json "$R/scaling.json" --markdown "$R/scaling.md"
tar -czf "$OUT/gpu-results.tar.gz" -C "$OUT" r
cat "$R"/train-*.md
ls -la "$R"
