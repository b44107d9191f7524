"""leash's reward-model training step vs TRL's RewardTrainer vs a bare PyTorch loop of the same
maths.

    python benchmarks/rm_vs_trl.py [--rounds 3] [--quick]

All three train the same seeded one-label GPT-2 sequence classifier with the Bradley–Terry loss
``-logsigmoid(r_chosen - r_rejected)`` (no margin, no centring) on the same token ids (prompt +
response, EOS included) in the same order, same batch size, fp32, AdamW at a constant learning
rate, gradient norm clipped at 1.0, one thread:

- ``leash``: ``RewardModelModule`` driven by a real ``lightning.Trainer`` (CPU, no logger,
  checkpointing or progress bar), rows collated by leash's ``PairCollator``;
- ``trl``: ``RewardTrainer`` tokenising the same rows as text itself (ids checked against ours);
- ``bare``: a hand-written loop: one forward of chosen over rejected through the model's own
  sequence-classification head, the loss, AdamW.

Figures per run: pairs/s at steady state (step end to step end, warm-up steps excluded) and
peak RSS over the contender's import baseline. Each contender runs in a fresh process per round
(round 1: leash, trl, bare; round 2: ...), each size in its own fork of that process.
"""

from __future__ import annotations

import torch

from common import PeakMemory, StepClock, contest_main
from shapes import sizes
from workload import (
    ADAM_BETAS,
    LR,
    MAX_GRAD_NORM,
    PREFERENCE_TABLE,
    assert_same_tokens,
    batches,
    hf_ticks,
    leash_loader,
    leash_resources,
    lightning_ticks,
    parameter_count,
    preference_extra,
    quiet_lightning_trainer,
    reported_check,
    reported_rate,
    run_figures,
    scalar_model,
    trainer_arguments,
    trl_columns,
    workload_rows,
)

IMPORTS = {
    "leash": ["lightning", "leash.modules.reward", "leash.data.collate"],
    "trl": ["trl", "datasets"],
    "bare": [],
}
"""What each contender imports before its import baseline is read (torch, transformers and the
workload helpers are imported by every child)."""
NOTES = [
    "Every sequence of a size has the same length, so no contender pads; where a row ends is "
    "then the same whether it is read from the attention mask (leash) or from the pad id (TRL, "
    "and the model's own head in the bare loop).",
    "TRL tokenises the text rows itself (prompt + response + EOS as one sequence); its ids are "
    "asserted equal to the ids leash and the bare loop train on, and rows are read in order "
    "(train_sampling_strategy=sequential).",
    "leash reads the score through the backbone and the score head at the last real token "
    "(leash.models.heads.score_sequences); TRL and the bare loop call the "
    "GPT2ForSequenceClassification forward, which scores every position and picks the last.",
    "transformers' Trainer puts biases and LayerNorm weights in a separate AdamW parameter "
    "group; with weight decay 0 the update is the same.",
    "leash computes and logs its accuracy/margin metrics on the steps Lightning hands to its "
    "loggers (every log_every_n_steps, 50 by default, and the last step: here the last step "
    "only), and watches the loss and rewards for NaN/inf every step; TRL computes them every "
    "step; the bare loop only the loss.",
    "leash runs each prompt once for its chosen and rejected responses where it pays "
    "(leash.models.shared_prompt: at the large size, not at the tiny one).",
    "leash runs GPT-2's gelu_new activation as torch's fused tanh-GELU kernel "
    "(leash.models.kernels; the same function to float rounding, 2.4e-7); TRL and the bare "
    "loop run transformers' NewGELUActivation, eight elementwise operations.",
    "leash's contender also runs leash's ResourceMetrics callback, as every leash run does; "
    "the pairs/s it reports are compared with the step clock (leash_reported_rate).",
    "The bare loop iterates over batches built before timing; leash and TRL collate rows "
    "inside their data loaders at every step.",
]


def leash_run(size) -> dict:
    """leash: RewardModelModule through lightning.Trainer, with leash's ResourceMetrics."""
    import tempfile

    from leash.config import RewardConfig, Scheduler
    from leash.modules.reward import RewardModelModule

    with PeakMemory() as memory, tempfile.TemporaryDirectory() as run_dir:
        tok, texts, rows = workload_rows(size)
        model = scalar_model(size, tok)
        algo = RewardConfig(lr=LR, adam_betas=ADAM_BETAS, scheduler=Scheduler.constant,
                            warmup_steps=0, max_steps=size.total_steps,
                            max_grad_norm=MAX_GRAD_NORM)
        clock = StepClock()
        trainer = quiet_lightning_trainer(
            size.total_steps, [lightning_ticks(clock), leash_resources(size, run_dir)],
            gradient_clip_val=MAX_GRAD_NORM)
        trainer.fit(RewardModelModule(model, algo),
                    train_dataloaders=leash_loader(rows, texts, size, tok.pad_token_id))
        reported = reported_rate(run_dir)
    figures = run_figures(clock, memory, size, parameter_count(model))
    return {**figures, "reported_per_s": reported,
            "reported_over_clock": reported / figures["per_s"]}


def trl_run(size) -> dict:
    """TRL: RewardTrainer."""
    import tempfile

    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    with PeakMemory() as memory, tempfile.TemporaryDirectory() as output_dir:
        tok, texts, rows = workload_rows(size)
        model = scalar_model(size, tok)
        args = RewardConfig(**trainer_arguments(size, output_dir),
                            center_rewards_coefficient=None)
        clock = StepClock()
        trainer = RewardTrainer(
            model=model, args=args, train_dataset=Dataset.from_dict(trl_columns(texts)),
            processing_class=tok, callbacks=[hf_ticks(clock)],
        )
        assert_same_tokens(trainer.train_dataset, rows, whole=True)
        trainer.train()
    return run_figures(clock, memory, size, parameter_count(model))


def bare_run(size) -> dict:
    """Bare PyTorch: the Bradley–Terry step written by hand."""
    with PeakMemory() as memory:
        tok, _, rows = workload_rows(size)
        data = batches(rows, size, tok.pad_token_id, whole=True)
        model = scalar_model(size, tok)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=ADAM_BETAS,
                                      weight_decay=0.0)
        clock = StepClock()
        for ids, mask, _ in data:
            rewards = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            chosen, rejected = rewards.squeeze(-1).chunk(2)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            clock.tick()
    return run_figures(clock, memory, size, parameter_count(model))


RUNS = {"leash": leash_run, "trl": trl_run, "bare": bare_run}
ALGORITHM = {"loss": "bradley_terry", "margin": 0.0, "center_coef": 0.0}
"""The loss settings every contender uses (recorded in the JSON)."""


def main() -> None:
    contest_main("rm_vs_trl", __doc__.splitlines()[0], RUNS, IMPORTS, sizes, PREFERENCE_TABLE,
                 preference_extra(ALGORITHM, NOTES), reported_check)


if __name__ == "__main__":
    main()
