#!/usr/bin/env bash
# The GPU benchmark in one command, for a bare accelerator machine: JAX with CUDA, PyTorch + transformers, and no
# TensorFlow, clu or installs. Pure-Python packages the machine lacks (ml_collections) come as wheels in .whl/:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0
# Finishes in under 8 minutes on one H100/H200 and writes
#   benchmarks/results/attention_gpu.json   the cuDNN attention path against the reference (values and gradients)
#   benchmarks/results/train_step_gpu.json  base and large, S=128 B=256 and S=512 B=64, bf16, ours vs HF PyTorch:
#                                           init / first-step / start-to-first-step seconds, tokens/s, MFU, memory
# (copied to $OUT too when it is set), and prints both tables last. BENCH_ARGS adds (overriding) arguments of
# train_step.py, e.g. a tiny CPU rehearsal: BENCH_ARGS='--sizes=tiny --dtypes=float32 --backend=cpu'.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/scenic_bert_site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/scenic_bert_site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c 'import jax, flax, optax, ml_collections, torch, transformers' || {
  echo 'gpu.sh: a package is missing (see the import error above); bring pure-Python ones as wheels in .whl/.' >&2
  exit 1
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
python3 -c 'import jax, torch, transformers; print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__,
  "| transformers", transformers.__version__)'

results=benchmarks/results
logs=$(mktemp -d /tmp/gpu_bench_logs.XXXX)
python3 benchmarks/gpu_attention_check.py --output=$results/attention_gpu.json 2>$logs/attention_check.stderr
check_rc=$?
# Each configuration's two peers compile at the same time (their own processes, 16 cores), then take turns on the
# GPU window by window; a configuration is not started past 6.5 minutes. What each piece of ours costs is
# benchmarks/gpu_ablation.sh's job.
python3 benchmarks/train_step.py --sizes=base,large --seq_lens=128,512 --batch_size=128:256,512:64 \
  --dtypes=bfloat16 --peers=ours,torch --steps=10 --repeats=3 --timeout=240 --deadline_min=6.5 --interleave=on \
  --log_dir=$logs --output=$results/train_step_gpu.json ${BENCH_ARGS:-}
bench_rc=$?
if [ -n "${OUT:-}" ]; then
  cp $results/attention_gpu.json $results/train_step_gpu.json "$OUT"/ 2>/dev/null
  tar -czf "$OUT"/gpu_logs.tar.gz -C "$logs" . 2>/dev/null
fi
echo "gpu.sh: $((SECONDS - started)) s; attention check rc=$check_rc, benchmark rc=$bench_rc"
exit $((check_rc || bench_rc))
