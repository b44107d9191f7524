#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py says what it runs and measures): SFT, DPO and
# PPO through `leash train` on a GPT-2-small-shaped model in bf16, then leash's DPO beside TRL's,
# in under 8 minutes on one GPU. Without a CUDA device it prints "no CUDA device" and exits 2.
#
#   bash benchmarks/gpu_check.sh              # figures in benchmarks/results/gpu_check/
#   bash benchmarks/gpu_check.sh --dry-run    # the same code paths at a tiny size on CPU
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
