"""leash's DPO training step vs TRL's DPOTrainer vs a bare PyTorch loop of the same maths.

    python benchmarks/dpo_vs_trl.py [--rounds 3] [--quick]

All three train the same seeded GPT-2 policy against a frozen copy of it (sigmoid DPO,
beta 0.1) on the same token ids in the same order, same batch size, fp32, AdamW at a constant
learning rate, gradient norm clipped at 1.0, one thread:

- ``leash``: ``DPOModule`` (reference ``FrozenCopy``) driven by a real ``lightning.Trainer``
  (CPU, no logger, checkpointing or progress bar), rows collated by leash's ``PairCollator``;
- ``trl``: ``DPOTrainer`` with a live reference (``precompute_ref_log_probs=False``), tokenising
  the same rows as text itself (its token ids are checked against ours before training);
- ``bare``: a hand-written loop: concatenated chosen + rejected forward of the policy, the
  reference forward under ``no_grad``, summed response log-probs, ``-logsigmoid`` loss, AdamW.

Figures per run: pairs/s at steady state (step end to step end, warm-up steps excluded) and
peak RSS over the contender's import baseline. Each contender runs in a fresh process per round
(round 1: leash, trl, bare; round 2: ...), each size in its own fork of that process.
"""

from __future__ import annotations

import copy

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
    causal_lm,
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
    trainer_arguments,
    trl_columns,
    workload_rows,
)

BETA = 0.1
CONTENDERS = ["leash", "trl", "bare"]
IMPORTS = {
    "leash": ["lightning", "leash.modules.dpo", "leash.models.reference", "leash.data.collate"],
    "trl": ["trl", "datasets"],
    "bare": [],
}
"""What each contender imports before its import baseline is read (torch, transformers and the
workload helpers are imported by every child)."""
NOTES = [
    "Every sequence of a size has the same length, so no contender pads.",
    "TRL tokenises the text rows itself; its prompt/chosen/rejected ids are asserted equal to "
    "the ids leash and the bare loop train on, and rows are read in order "
    "(train_sampling_strategy=sequential).",
    "TRL runs its own forward: a fused LM head that returns per-token log-probs and also "
    "computes entropy, mean logits and top-1 agreement for its metrics.",
    "transformers' Trainer puts biases and LayerNorm weights in a separate AdamW parameter "
    "group; with weight decay 0 the update is the same.",
    "leash computes and logs its DPO metrics on the steps Lightning hands to its loggers "
    "(every log_every_n_steps, 50 by default, and the last step: here the last step only; "
    "with logger=False Lightning still runs self.log), and watches the loss and rewards for "
    "NaN/inf every step; TRL computes its metrics every step; the bare loop only the loss.",
    "leash runs each prompt once for its chosen and rejected responses where it pays "
    "(leash.models.shared_prompt: at the large size, not at the tiny one), applies the LM head "
    "only where it predicts a response token, and runs the reference under inference_mode.",
    "leash runs GPT-2's gelu_new activation as torch's fused tanh-GELU kernel "
    "(leash.models.kernels; the same function to float rounding, 2.4e-7); TRL and the bare "
    "loop run transformers' NewGELUActivation, eight elementwise operations.",
    "leash's contender also runs leash's ResourceMetrics callback, as every leash run does; "
    "the pairs/s it reports are compared with the step clock (leash_reported_rate).",
    "The bare loop iterates over batches built before timing; leash and TRL collate rows "
    "inside their data loaders at every step.",
]


def leash_run(size) -> dict:
    """leash: DPOModule through lightning.Trainer, with leash's ResourceMetrics."""
    import tempfile

    from leash.config import DPOConfig, Scheduler
    from leash.models.reference import FrozenCopy
    from leash.modules.dpo import DPOModule

    with PeakMemory() as memory, tempfile.TemporaryDirectory() as run_dir:
        tok, texts, rows = workload_rows(size)
        policy = causal_lm(size, tok)
        algo = DPOConfig(beta=BETA, lr=LR, adam_betas=ADAM_BETAS, scheduler=Scheduler.constant,
                         warmup_steps=0, max_steps=size.total_steps, max_grad_norm=MAX_GRAD_NORM)
        module = DPOModule(policy, FrozenCopy(copy.deepcopy(policy)), algo)
        clock = StepClock()
        trainer = quiet_lightning_trainer(
            size.total_steps, [lightning_ticks(clock), leash_resources(size, run_dir)],
            gradient_clip_val=MAX_GRAD_NORM)
        trainer.fit(module, train_dataloaders=leash_loader(rows, texts, size, tok.pad_token_id))
        reported = reported_rate(run_dir)
    figures = run_figures(clock, memory, size, parameter_count(policy))
    return {**figures, "reported_per_s": reported,
            "reported_over_clock": reported / figures["per_s"]}


def trl_run(size) -> dict:
    """TRL: DPOTrainer with a live reference model."""
    import tempfile

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    with PeakMemory() as memory, tempfile.TemporaryDirectory() as output_dir:
        tok, texts, rows = workload_rows(size)
        policy = causal_lm(size, tok)
        args = DPOConfig(**trainer_arguments(size, output_dir), beta=BETA,
                         loss_type=["sigmoid"], precompute_ref_log_probs=False)
        clock = StepClock()
        trainer = DPOTrainer(
            model=policy, ref_model=copy.deepcopy(policy), args=args,
            train_dataset=Dataset.from_dict(trl_columns(texts)), processing_class=tok,
            callbacks=[hf_ticks(clock)],
        )
        assert_same_tokens(trainer.train_dataset, rows)
        trainer.train()
    return run_figures(clock, memory, size, parameter_count(policy))


def summed_logps(model, ids, mask, labels) -> torch.Tensor:
    """(2B,) summed log-probs of the labelled tokens: shift, log-softmax, gather, mask, sum."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
    targets = labels[:, 1:]
    picked = logits.log_softmax(-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (targets != -100)).sum(-1)


def bare_run(size) -> dict:
    """Bare PyTorch: the DPO step written by hand."""
    with PeakMemory() as memory:
        tok, _, rows = workload_rows(size)
        data = batches(rows, size, tok.pad_token_id)
        policy = causal_lm(size, tok)
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=LR, betas=ADAM_BETAS,
                                      weight_decay=0.0)
        clock = StepClock()
        for ids, mask, labels in data:
            chosen, rejected = summed_logps(policy, ids, mask, labels).chunk(2)
            with torch.no_grad():
                ref_chosen, ref_rejected = summed_logps(reference, ids, mask, labels).chunk(2)
            margin = (chosen - ref_chosen) - (rejected - ref_rejected)
            loss = -torch.nn.functional.logsigmoid(BETA * margin).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            clock.tick()
    return run_figures(clock, memory, size, parameter_count(policy))


RUNS = {"leash": leash_run, "trl": trl_run, "bare": bare_run}
ALGORITHM = {"loss": "sigmoid", "beta": BETA, "reference": "frozen copy, live forward"}
"""The loss settings every contender uses (recorded in the JSON)."""


def main() -> None:
    contest_main("dpo_vs_trl", __doc__.splitlines()[0], RUNS, IMPORTS, sizes, PREFERENCE_TABLE,
                 preference_extra(ALGORITHM, NOTES), reported_check)


if __name__ == "__main__":
    main()
