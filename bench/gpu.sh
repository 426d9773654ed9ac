#!/usr/bin/env bash
# GPU benchmark: one epoch of CoLA-shaped bert-base training in bf16, the recipe's Trainer set-up and a
# bare loop, eager and torch.compile'd; writes bench/RESULTS.md's GPU section and bench/results-gpu/*.json.
#   bash bench/gpu.sh                 # all four runs
#   PYTHON=.venv/bin/python EPOCHS=3 PATHS="trainer" COMPILE="no" bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python3)}"
EPOCHS="${EPOCHS:-2}"
PATHS="${PATHS:-trainer loop}"
COMPILE="${COMPILE:-no yes}"
RESULTS=bench/results-gpu
mkdir -p "$RESULTS"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: skipped: torch sees no CUDA device." >&2
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
jsons=()
for path in $PATHS; do
  for compile in $COMPILE; do
    flag=""; [ "$compile" = yes ] && flag="--compile"
    out="$RESULTS/$path-compile-$compile.json"
    echo "== $path, compile=$compile"
    if "$PYTHON" bench/gpu_bench.py --path "$path" --epochs "$EPOCHS" $flag --json "$out"; then
      jsons+=("$out")
    else
      echo "gpu.sh: $path compile=$compile failed; see above." >&2
    fi
  done
done
[ ${#jsons[@]} -gt 0 ] && "$PYTHON" bench/gpu_bench.py --report "${jsons[@]}" --command "bash bench/gpu.sh (EPOCHS=$EPOCHS)"
if [ -n "${OUT:-}" ]; then cp -r "$RESULTS" bench/RESULTS.md "$OUT"/; fi
