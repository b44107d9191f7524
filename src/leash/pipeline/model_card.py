"""The model card (``README.md``) of every policy and reward model folder a run saves.

The Hub renders a model folder's ``README.md``: YAML front matter it indexes (library, base
model, task, tags, data sets) above a Markdown body. leash's body says what the model is, the
algorithm and its key hyperparameters, the data, the run's held-out metrics (the ``metrics``
block of the run's ``metrics.json``, written when fit ended), the command that made it (the
job's Hydra overrides, the ones ``.hydra/overrides.yaml`` records), the versions, and how to load
it. The card is written atomically into the folder before it is cached or pushed.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path

from leash.atomic import write_text_atomic
from leash.config import (
    DataSource,
    DPOConfig,
    DPOLoss,
    OnlineDPOConfig,
    PPOConfig,
    RewardConfig,
    TrainConfig,
    needs_critic,
)
from leash.config.validation import looks_like_path

CARD_FILE = "README.md"

COMMON_FIELDS = ("lr", "max_steps", "warmup_steps", "scheduler", "weight_decay", "max_grad_norm")
"""Fields of every algorithm the card lists (as ``algo.<field>``)."""

FAMILY_FIELDS: dict[type, tuple[str, ...]] = {
    DPOConfig: ("loss", "beta", "label_smoothing", "reference"),
    OnlineDPOConfig: ("loss", "beta", "label_smoothing", "reference", "reward", "schedule",
                      "rounds", "steps_per_round", "reference_update"),
    PPOConfig: ("advantage", "reward", "kl_coef", "kl_estimator", "adaptive_kl",
                "samples_per_prompt", "ppo_epochs", "num_minibatches", "clip_range",
                "whiten_advantages", "critic_lr", "gamma", "lam"),
    RewardConfig: ("margin", "center_coef"),
}
"""The key hyperparameters of each family, first in the card's table; SFT has none of its own."""

CRITIC_FIELDS = frozenset({"critic_lr", "gamma", "lam"})
"""PPO fields a critic-free estimator (RLOO, GRPO, REINFORCE) never reads."""


def is_reward_model(cfg: TrainConfig) -> bool:
    """Whether the run saves a reward model (a scalar head) rather than a policy."""
    return isinstance(cfg.algo, RewardConfig)


def _hub_id(name: str | None) -> str | None:
    """``name`` when it names a Hub model, None for the tiny preset or a local path."""
    if not name or name == "tiny" or looks_like_path(name):
        return None
    return name


def hub_base_model(cfg: TrainConfig) -> str | None:
    """The Hub model this one descends from, for ``base_model:``: the upstream SFT policy when
    it is a Hub id, else ``model.name_or_path``; None when neither is on the Hub (the Hub only
    accepts model ids there, so a tiny or local model is described in the body instead)."""
    upstream = None if cfg.algo.name == "sft" else _hub_id(cfg.upstream.sft_policy)
    return upstream or _hub_id(cfg.model.name_or_path)


def front_matter(cfg: TrainConfig) -> dict:
    """The metadata the Hub reads from the card's YAML header."""
    data: dict = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification" if is_reward_model(cfg) else "text-generation",
        "tags": ["leash", cfg.algo.name, *(["reward-model"] if is_reward_model(cfg) else [])],
    }
    base = hub_base_model(cfg)
    if base:
        data["base_model"] = base
    if cfg.data.source == DataSource.hub and cfg.data.path:
        data["datasets"] = [cfg.data.path]
    return data


def _text(value: object) -> str:
    """A config value as an override would spell it."""
    if isinstance(value, Enum):
        return str(value.value)
    return "null" if value is None else str(value)


def key_hyperparameters(cfg: TrainConfig) -> list[tuple[str, str]]:
    """``(key, value)`` rows: the family's key fields, then the common ones, batch, seed, LoRA."""
    algo = cfg.algo
    names = list(FAMILY_FIELDS.get(type(algo), ()))
    if isinstance(algo, DPOConfig) and DPOLoss(algo.loss) == DPOLoss.simpo:
        names.append("simpo_gamma")
    if isinstance(algo, PPOConfig) and not needs_critic(algo):
        names = [name for name in names if name not in CRITIC_FIELDS]
    rows = [(f"algo.{name}", _text(getattr(algo, name))) for name in (*names, *COMMON_FIELDS)]
    rows += [("data.batch_size", _text(cfg.data.batch_size)), ("seed", _text(cfg.seed))]
    if cfg.peft.enabled:
        rows += [("peft.r", _text(cfg.peft.r)), ("peft.alpha", _text(cfg.peft.alpha))]
    return rows


def describe_algorithm(cfg: TrainConfig) -> str:
    """One sentence on how the model was trained."""
    algo = cfg.algo
    if isinstance(algo, OnlineDPOConfig):
        return (f"on-policy DPO-family training (loss `{_text(algo.loss)}`, schedule "
                f"`{_text(algo.schedule)}`) on pairs sampled from the current policy and "
                f"ordered by the `{_text(algo.reward)}` reward")
    if isinstance(algo, DPOConfig):
        return (f"offline preference optimisation of the DPO family (loss `{_text(algo.loss)}`, "
                f"β = {algo.beta}) on fixed preference pairs, against a frozen reference policy")
    if isinstance(algo, PPOConfig):
        return (f"online RL: responses sampled from the policy, scored by the "
                f"`{_text(algo.reward)}` reward minus a per-token KL penalty to the reference "
                f"(coefficient {algo.kl_coef}), advantages by `{_text(algo.advantage)}`")
    if isinstance(algo, RewardConfig):
        return ("Bradley–Terry training of a scalar score (on every preference pair the chosen "
                "response must outscore the rejected one)")
    return "supervised fine-tuning (the causal-LM loss on responses, prompt tokens masked)"


def describe_base(cfg: TrainConfig) -> str:
    """Where the network's weights first came from."""
    model = cfg.model
    if model.name_or_path == "tiny":
        tiny = model.tiny
        return (f"a tiny {_text(tiny.arch)} built by leash from a config ({tiny.num_layers} "
                f"layers, width {tiny.hidden_size}, {tiny.num_heads} heads) with random weights: "
                f"no pretrained model")
    if _hub_id(model.name_or_path):
        return f"[{model.name_or_path}](https://huggingface.co/{model.name_or_path})"
    return f"the local model `{model.name_or_path}`"


def describe_data(cfg: TrainConfig) -> str:
    """Which preference data the run read."""
    data = cfg.data
    if data.source == DataSource.task:
        text = (f"leash's built-in `{data.task.name}` task, generated locally: synthetic prompts "
                f"with a known gold reward, and preference pairs sampled from the SFT policy and "
                f"labelled by Bradley–Terry on the gold reward (label temperature "
                f"{data.task.label_temperature}, task seed {data.task.seed})")
    elif data.source == DataSource.hub:
        subset = f", subset `{data.subset}`" if data.subset else ""
        text = (f"the Hub data set [{data.path}](https://huggingface.co/datasets/{data.path})"
                f"{subset}, split `{data.train_split}`")
    elif data.source == DataSource.files:
        text = f"the local files `{data.path}`"
    else:
        text = f"the `save_to_disk` data set `{data.path}`"
    if data.relabel_with:
        text += f"; every pair relabelled by the judge `{data.relabel_with}` (synthetic gold)"
    return text + f"; this run reads {_what_is_read(cfg)}, at most {data.max_length} tokens each."


def _what_is_read(cfg: TrainConfig) -> str:
    """Which view of the shared preference data the algorithm trains on."""
    if isinstance(cfg.algo, (PPOConfig, OnlineDPOConfig)):
        return "the prompts of the pairs (responses are sampled while training)"
    if isinstance(cfg.algo, (DPOConfig, RewardConfig)):
        return "the (prompt, chosen, rejected) pairs"
    if cfg.data.source == DataSource.task:
        return "the task's own SFT corpus"
    return "the prompts with their chosen responses"


def metrics_table(metrics: Mapping[str, float | None]) -> str:
    """The held-out metrics (``eval/*`` and ``val/*``) as a Markdown table."""
    rows = [
        f"| `{name}` | {'non-finite' if value is None else f'{value:.4g}'} |"
        for name, value in sorted(metrics.items())
        if name.startswith(("eval/", "val/"))
    ]
    if not rows:
        return "The run recorded no held-out metrics."
    return "\n".join(["| metric | value |", "|---|---:|", *rows])


def usage(cfg: TrainConfig, location: str) -> str:
    """A Python snippet that loads the model from ``location`` (its Hub id or folder)."""
    if is_reward_model(cfg):
        return "\n".join([
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f'model = AutoModelForSequenceClassification.from_pretrained("{location}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{location}")',
            "# One scalar per sequence (num_labels=1), read at its last non-pad token.",
            'score = model(**tokenizer("prompt and response", return_tensors="pt")).logits[0, 0]',
            "```",
        ])  # fmt: skip
    return "\n".join([
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{location}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{location}")',
        "```",
    ])  # fmt: skip


def command_line(overrides: Sequence[str]) -> str:
    """The ``leash train`` command of a job's overrides, quoted for a POSIX shell."""
    return shlex.join(["leash", "train", *overrides])


def _versions(record: Mapping) -> str:
    """``leash X, torch Y, ...`` from the ``runtime`` block of metrics.json."""
    versions = record.get("runtime", {}).get("versions", {})
    if not versions:
        return "versions not recorded (the run wrote no metrics.json)"
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def render_model_card(
    cfg: TrainConfig, record: Mapping, overrides: Sequence[str], started_from: str
) -> str:
    """The card's text.

    Args:
        record: the run's metrics.json payload (``metrics``, ``runtime``); empty when absent.
        overrides: the job's Hydra overrides, i.e. its command line.
        started_from: the folder or Hub id the weights were loaded from before training.
    """
    from huggingface_hub import ModelCardData  # loaded by transformers already at this point

    kind = "reward model" if is_reward_model(cfg) else "policy (a causal language model)"
    location = cfg.hub.repo_id if cfg.hub.push and cfg.hub.repo_id else str(
        Path(cfg.paths.output_dir) / ("reward_model" if is_reward_model(cfg) else "policy")
    )
    table = "\n".join(f"| `{key}` | {value} |" for key, value in key_hyperparameters(cfg))
    body = f"""
# {cfg.hub.repo_id or cfg.run_name}

A {kind} trained by leash with `algo={cfg.algo.name}`: {describe_algorithm(cfg)}.

## Training

- Base network: {describe_base(cfg)}.
- Started from: `{started_from}`.
- Data: {describe_data(cfg)}

| hyperparameter | value |
|---|---|
{table}

## Evaluation

Final metrics of the run on held-out data (its `metrics.json`):

{metrics_table(record.get("metrics", {}))}

## Reproduce

```bash
{command_line(overrides)}
```

Made with {_versions(record)}.

## Usage

{usage(cfg, location)}
"""
    return f"---\n{ModelCardData(**front_matter(cfg)).to_yaml()}\n---\n{body}"


def write_model_card(
    cfg: TrainConfig, folder: Path, overrides: Sequence[str], started_from: str
) -> Path:
    """Write the card of the model saved in ``folder`` (after fit: metrics.json is there)."""
    metrics_file = Path(cfg.paths.output_dir) / "metrics.json"
    record = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    path = Path(folder) / CARD_FILE
    write_text_atomic(path, render_model_card(cfg, record, overrides, started_from))
    return path
