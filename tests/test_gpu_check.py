"""The prepared GPU check without a GPU: it stops at once saying so, its `leash train` configs
are valid in both modes, and its MFU numerator is the hand-computed one. (Its dry run,
`bash benchmarks/gpu_check.sh --dry-run`, runs every code path on CPU but takes minutes, so it
is not part of the suite.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from composing import composer
from leash.config import validate

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402


def test_without_a_cuda_device_it_says_so_in_one_line_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "no CUDA device\n"), result.stderr


@pytest.mark.parametrize("mode", [gpu_check.GPU, gpu_check.DRY_RUN], ids=lambda m: m.name)
def test_every_run_of_the_check_is_a_valid_config(tmp_path, mode):
    with composer(tmp_path / "run") as compose:
        for name in gpu_check.RUNS:
            typed = validate(compose(gpu_check.run_overrides(name, mode, tmp_path)))
            assert typed.algo.name == name.split("_")[0]
            assert typed.data.max_length == mode.context
            layers, width = gpu_check.LAYERS_WIDTH[mode.name]
            assert (typed.model.tiny.num_layers, typed.model.tiny.hidden_size) == (layers, width)
            if name.startswith("ppo"):
                assert typed.algo.ppo_epochs == gpu_check.PPO_EPOCHS


def test_update_flops_count_trained_networks_once_per_epoch():
    roles = {"policy": {"num_parameters": 1000, "trainable_parameters": 4000},
             "reference": {"num_parameters": 1000, "trainable_parameters": 0},
             "critic": {"num_parameters": 500, "trainable_parameters": 2000}}  # fmt: skip
    metrics = {"resources": {"roles": roles}}
    # Dry run: 2 layers, width 64, 16 tokens: attention 12 x 2 x 64 x 16 = 24,576 per network.
    dpo = gpu_check.update_flops(metrics, "dpo_copy", gpu_check.DRY_RUN)
    assert dpo == (6 * 1000 + 24_576) + (6 * 500 + 24_576)
    assert gpu_check.update_flops(metrics, "ppo_separate", gpu_check.DRY_RUN) == 4 * dpo
    assert gpu_check.mfu(1e9, 1e3, 1e13) == pytest.approx(0.1)
    assert gpu_check.mfu(1e9, 1e3, None) is None
