#!/usr/bin/env bash
# What each piece of our GPU train step costs, at base size (run after gpu.sh, on the same kind of machine, with the
# same .whl/ wheels). Each group's workers compile in parallel, then take turns on the GPU (10-step windows):
#   S=128 B=256: ours (attention_impl=auto: our flash kernel, dropout inside) and HF PyTorch; then ours with
#     XLA attention (probabilities materialised, dropped by XLA), with cuDNN attention and no attention dropout (not
#     the recipe: the kernel's speed without dropout), with no dropout at all (what dropout costs), with the 'rbg'
#     PRNG and with the hash dropout RNG.
#   S=512 B=64: ours and HF PyTorch; ours with XLA attention.
# Writes benchmarks/results/train_step_gpu_ablation_{128,512}.json (and copies to $OUT when set).
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/scenic_bert_site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/scenic_bert_site${PYTHONPATH:+:$PYTHONPATH}
fi
results=benchmarks/results
logs=$(mktemp -d /tmp/gpu_ablation_logs.XXXX)
common=(--dtypes=bfloat16 --peers=ours,torch --steps=10 --repeats=3 --timeout=240 --interleave=on
        --peak_frameworks=jax --log_dir=$logs)
python3 benchmarks/gpu_attention_check.py --output=$results/attention_gpu.json 2>$logs/attention_check.stderr
check_rc=$?
python3 benchmarks/train_step.py --sizes=base --seq_lens=128 --batch_size=256 "${common[@]}" \
  --ours_variants='xla:attention_impl=xla;cudnn_no_attn_dropout:attention_impl=cudnn,attention_dropout_prob=0.0;no_dropout:hidden_dropout_prob=0.0,attention_dropout_prob=0.0;rbg:prng=rbg;hash_dropout:dropout_rng=hash' \
  --output=$results/train_step_gpu_ablation_128.json ${BENCH_ARGS:-}
rc128=$?
python3 benchmarks/train_step.py --sizes=base --seq_lens=512 --batch_size=64 "${common[@]}" \
  --ours_variants='xla:attention_impl=xla' --output=$results/train_step_gpu_ablation_512.json ${BENCH_ARGS512:-}
rc512=$?
if [ -n "${OUT:-}" ]; then
  cp $results/attention_gpu.json $results/train_step_gpu_ablation_*.json "$OUT"/ 2>/dev/null
  tar -czf "$OUT"/gpu_ablation_logs.tar.gz -C "$logs" . 2>/dev/null
fi
echo "gpu_ablation.sh: $((SECONDS - started)) s; rc: check=$check_rc 128=$rc128 512=$rc512"
