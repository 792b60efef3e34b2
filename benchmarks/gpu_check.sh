#!/usr/bin/env bash
# The GPU check, ready to run on a CUDA machine (docs/distributed.md):
#   1. the test suite's device tests (CUDA paths; they skip without a GPU),
#   2. GPT-2 small (124M) on one GPU: bf16 autocast, fused attention, torch.compile,
#      tokens/s and MFU as JSON (benchmarks/gpu_check.py),
#   3. with two or more GPUs: `glassbox train` under torchrun on all of them, with DDP and
#      with --fsdp, GPT-2 small's shape on the embedded corpus; median tokens/s of each
#      (and, for reference, of one GPU through the same command).
# Usage: bash benchmarks/gpu_check.sh [STEPS]   (default 300; every step count is printed)
set -euo pipefail
steps=${1:-300}
cd "$(dirname "$0")/.."
python -m pytest -q -p no:cacheprovider tests/test_device.py
if ! python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo '{"gpu_check": "no CUDA device: only the device tests ran (and skipped their CUDA cases)"}'
  exit 0
fi
python benchmarks/gpu_check.py --steps "$steps"
gpus=$(python -c 'import torch; print(torch.cuda.device_count())')
out=$(mktemp -d)
gpt2=(--n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --device cuda --compile
      --dtype bfloat16 --max-iters "$steps" --lr-decay-iters "$steps" --eval-interval "$steps"
      --eval-iters 2 --no-progress)
median_tokens_per_s() {  # skips the first fifth of the steps (compilation, warm-up)
  python - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
speeds = [r["tokens_per_s"] for r in rows if r["kind"] == "train"]
print(round(statistics.median(speeds[len(speeds) // 5:])))
PY
}
glassbox train "${gpt2[@]}" --batch-size 8 --run "$out/one"
one=$(median_tokens_per_s "$out/one")
if (( gpus < 2 )); then
  echo "{\"gpus\": $gpus, \"train_one_gpu_tokens_per_s\": $one, \"ddp\": \"needs 2+ GPUs\"}"
  exit 0
fi
batch=$(( 8 * gpus ))  # the global batch: 8 rows per GPU, as one GPU had
torchrun --standalone --nproc_per_node "$gpus" -m glassbox train "${gpt2[@]}" \
  --batch-size "$batch" --run-dir "$out/ddp"
torchrun --standalone --nproc_per_node "$gpus" -m glassbox train "${gpt2[@]}" \
  --batch-size "$batch" --fsdp --run-dir "$out/fsdp"
ddp=$(median_tokens_per_s "$out/ddp")
fsdp=$(median_tokens_per_s "$out/fsdp")
python -c "import json; print(json.dumps({'gpus': $gpus, 'steps': $steps,
  'train_one_gpu_tokens_per_s': $one, 'ddp_tokens_per_s': $ddp, 'fsdp_tokens_per_s': $fsdp,
  'ddp_scaling': round($ddp / ($one * $gpus), 3), 'fsdp_scaling': round($fsdp / ($one * $gpus), 3)}))"
