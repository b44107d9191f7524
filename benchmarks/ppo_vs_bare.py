"""leash's PPO iteration vs a bare PyTorch loop of the same shape, split into generation,
scoring, update and the rest.

    python benchmarks/ppo_vs_bare.py [--rounds 3] [--quick]

Both run PPO-RLHF with four GPT-2 networks built from the same seeds: a policy, its frozen
reference copy, a critic that starts as a copy of the reward model, and the frozen reward model;
the same prompts in the same order, one thread, fp32. One iteration:

1. sample ``samples_per_prompt`` responses per prompt with a KV cache (temperature 1);
2. score them without gradients: policy and reference log-probs, critic values, reward;
3. shape the rewards (k1 KL penalty per token, score on the last token, missing-EOS penalty),
   GAE, whitened advantages;
4. ``ppo_epochs`` x ``num_minibatches`` clipped policy + value updates, one AdamW step each
   (policy and critic in one optimizer, gradient norm clipped at 1.0).

- ``leash``: ``PPOModule`` (``SeparatePolicyCritic``, ``LearnedReward``) driven by a real
  ``lightning.Trainer``; its phases are the ``time/generation_s``, ``time/scoring_s`` and
  ``time/update_s`` metrics it logs, the iteration is timed from one ``on_train_batch_end`` to
  the next, and ``other_s`` is the rest (shaping, GAE, statistics, logging, the loop).
- ``bare``: the same four steps written by hand, each phase timed with ``perf_counter``.

Contenders alternate in one process, each run in its own fork (its own heap and peak RSS, the
same import baseline for both).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
from dataclasses import asdict, dataclass

import lightning
import torch

from common import PeakMemory, Table, environment, forked, interleave, single_thread
from common import report_contest as report
from shapes import Size, sizes, text_pairs
from workload import LR, MAX_GRAD_NORM, causal_lm, quiet_lightning_trainer, scalar_model, tokenizer


@dataclass(frozen=True)
class PPOShape:
    """The PPO iteration of one size (the model and prompt/response lengths come from Size)."""

    prompts: int
    """Prompts per iteration."""
    samples_per_prompt: int
    ppo_epochs: int
    num_minibatches: int
    warmup_iterations: int
    """Iterations run before timing starts."""
    timed_iterations: int

    @property
    def rollouts(self) -> int:
        return self.prompts * self.samples_per_prompt

    @property
    def iterations(self) -> int:
        return self.warmup_iterations + self.timed_iterations


SHAPES = {
    "tiny": PPOShape(prompts=8, samples_per_prompt=2, ppo_epochs=4, num_minibatches=4,
                     warmup_iterations=2, timed_iterations=8),
    "large": PPOShape(prompts=4, samples_per_prompt=2, ppo_epochs=2, num_minibatches=2,
                      warmup_iterations=1, timed_iterations=2),
}
QUICK = {"tiny": (1, 2), "large": (1, 1)}
"""(warm-up, timed) iterations of ``--quick`` smoke runs."""
KL_COEF, GAMMA, LAM, CLIP, CLIP_VALUE, VF_COEF, MISSING_EOS_PENALTY = (
    0.05, 1.0, 0.95, 0.2, 0.2, 0.1, 1.0
)
"""leash's PPOConfig defaults, used by both contenders."""
PHASES = ["generation_s", "scoring_s", "update_s", "other_s"]
IMPORTS = ["leash.modules.ppo", "leash.models.policy_critic", "leash.rollout.rewards",
           "leash.data.collate", "leash.data.encoding"]
"""Imported once by the parent, before any fork, so no run pays for them (same baseline)."""
NOTES = [
    "Scoring: leash runs each network over the rollout in chunks of the minibatch size and "
    "also computes the policy's per-token entropy (a logged statistic); the bare loop runs "
    "each network once over the whole rollout and computes no entropy.",
    "Update: leash computes the entropy of every minibatch (entropy_coef is 0, so it is a "
    "statistic only), checks every loss for NaN/inf through the strategy and records "
    "diagnostics; the bare loop computes only the two clipped losses.",
    "Both sample with their own random draws, so response lengths (EOS) can differ between "
    "contenders; with these vocabularies nearly every row runs to the length limit.",
    "leash's phase times come from its own logged time/* metrics; the bare loop's from "
    "perf_counter around the same four steps. other_s is the iteration minus the three phases.",
]


def workloads(quick: bool) -> dict[str, tuple[Size, PPOShape]]:
    """(model size, PPO shape) by size name, with fewer iterations when ``quick``."""
    chosen = {}
    for name, size in sizes(quick).items():
        shape = SHAPES[name]
        if quick:
            warmup, timed = QUICK[name]
            shape = PPOShape(**{**asdict(shape), "warmup_iterations": warmup,
                                "timed_iterations": timed})
        chosen[name] = (size, shape)
    return chosen


def networks(size: Size, tok) -> tuple:
    """Policy, reference, critic, reward model: the same seeds for both contenders."""
    policy = causal_lm(size, tok, seed=0)
    reward = scalar_model(size, tok, seed=1).eval().requires_grad_(False)
    critic = copy.deepcopy(reward).train().requires_grad_(True)
    return policy, copy.deepcopy(policy).eval().requires_grad_(False), critic, reward


def prompt_ids(size: Size, shape: PPOShape, tok) -> list[list[int]]:
    """Every iteration's prompts (BOS + words), in order."""
    rows = text_pairs(size, shape.prompts * shape.iterations, seed=1)
    return [tok(row.prompt)["input_ids"] for row in rows]


def steady(ends: list[float], phases: list[dict[str, float]], shape: PPOShape) -> dict:
    """Per-phase means over the timed iterations, iterations/s, and the raw per-iteration rows.

    ``ends`` are the step-end timestamps and ``phases`` the three measured phases of every
    iteration; an iteration runs from the previous iteration's end to its own.
    """
    warmup = shape.warmup_iterations
    rows = []
    for index in range(warmup, len(ends)):
        row = dict(phases[index], total_s=ends[index] - ends[index - 1])
        row["other_s"] = row["total_s"] - sum(row[p] for p in PHASES[:3])
        rows.append(row)
    mean = {key: sum(row[key] for row in rows) / len(rows) for key in [*PHASES, "total_s"]}
    iterations_per_s = len(rows) / (ends[-1] - ends[warmup - 1])
    return {**mean, "iterations_per_s": iterations_per_s,
            "rollouts_per_s": iterations_per_s * shape.rollouts, "iterations": rows}


# ------------------------------------------------------------------------------ leash
class PhaseClock(lightning.Callback):
    """Records every iteration's end and the phase times leash's PPOModule logged for it."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.phases: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        self.ends.append(time.perf_counter())
        metrics = trainer.callback_metrics
        self.phases.append({p: float(metrics[f"time/{p}"]) for p in PHASES[:3]})


def leash_run(workload: tuple[Size, PPOShape]) -> dict:
    """leash: PPOModule through lightning.Trainer."""
    from torch.utils.data import DataLoader

    from leash.config import PPOConfig, Scheduler, optimizer_steps
    from leash.data.collate import PromptCollator
    from leash.data.encoding import EncodedPrompt
    from leash.models.policy_critic import SeparatePolicyCritic
    from leash.modules.ppo import PPOModule
    from leash.rollout.rewards import LearnedReward

    size, shape = workload
    with PeakMemory() as memory:
        tok = tokenizer(size)
        policy, reference, critic, reward = networks(size, tok)
        algo = PPOConfig(
            lr=LR, critic_lr=LR, scheduler=Scheduler.constant, warmup_steps=0,
            max_steps=shape.iterations, samples_per_prompt=shape.samples_per_prompt,
            ppo_epochs=shape.ppo_epochs, num_minibatches=shape.num_minibatches,
            kl_coef=KL_COEF, gamma=GAMMA, lam=LAM, clip_range=CLIP, clip_range_value=CLIP_VALUE,
            vf_coef=VF_COEF, missing_eos_penalty=MISSING_EOS_PENALTY,
            max_new_tokens=size.response_tokens, max_grad_norm=MAX_GRAD_NORM,
        )
        module = PPOModule(
            SeparatePolicyCritic(policy, reference, critic), LearnedReward(reward), algo,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            max_new_tokens=size.response_tokens, max_grad_norm=MAX_GRAD_NORM,
        )
        prompts = [EncodedPrompt(i, "", ids)
                   for i, ids in enumerate(prompt_ids(size, shape, tok))]
        loader = DataLoader(prompts, batch_size=shape.prompts, shuffle=False,
                            collate_fn=PromptCollator(tok.pad_token_id))
        clock = PhaseClock()
        trainer = quiet_lightning_trainer(optimizer_steps(algo), [clock])
        trainer.fit(module, train_dataloaders=loader)
    return {**steady(clock.ends, clock.phases, shape), **memory.figures()}


# ------------------------------------------------------------------------------- bare
def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def bare_sample(policy, ids, mask, max_new_tokens: int, eos: int, pad: int):
    """KV-cached ancestral sampling: (B, T) response ids padded after EOS and their mask."""
    policy.eval()
    place = positions(mask)
    out = policy(input_ids=ids, attention_mask=mask, position_ids=place, use_cache=True)
    place, done, tokens, alive = place[:, -1:] + 1, torch.zeros(len(ids), dtype=torch.bool), [], []
    for step in range(max_new_tokens):
        token = torch.multinomial(out.logits[:, -1].softmax(-1), 1).squeeze(-1)
        token = torch.where(done, pad, token)
        alive.append(~done)
        tokens.append(token)
        done = done | (token == eos)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = policy(input_ids=token[:, None], attention_mask=mask, position_ids=place,
                     cache=out.cache, use_cache=True)
        place = place + 1
    policy.train()
    return torch.stack(tokens, 1), torch.stack(alive, 1).long()


def response_logps(model, ids, mask, width: int, response, response_mask) -> torch.Tensor:
    """(B, T) log-probs of the response tokens under a causal LM, 0 on padding."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                   use_cache=False).logits[:, width - 1 : -1]
    return logits.log_softmax(-1).gather(-1, response.unsqueeze(-1)).squeeze(-1) * response_mask


def hidden(model, ids, mask) -> torch.Tensor:
    """(B, L, H) last hidden states of a sequence classifier's backbone."""
    return model.transformer(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                             use_cache=False).last_hidden_state


def critic_values(critic, ids, mask, width: int, response_mask) -> torch.Tensor:
    """(B, T) values of the states before each response token, 0 on padding."""
    return critic.score(hidden(critic, ids, mask)).squeeze(-1)[:, width - 1 : -1] * response_mask


@dataclass
class BareRollout:
    """What the bare update reads: inputs, old log-probs and values, advantages, returns."""

    ids: torch.Tensor
    mask: torch.Tensor
    response: torch.Tensor
    response_mask: torch.Tensor
    logps: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


@torch.no_grad()
def bare_score(nets, prompt, prompt_mask, response, response_mask, eos: int):
    """The rollout (one forward per network over all rows) and its (B,) penalised scores."""
    policy, reference, critic, reward = nets
    ids = torch.cat([prompt, response], 1)
    mask = torch.cat([prompt_mask, response_mask], 1)
    width = prompt.shape[1]
    policy.eval()
    logps = response_logps(policy, ids, mask, width, response, response_mask)
    policy.train()
    ref = response_logps(reference, ids, mask, width, response, response_mask)
    values = critic_values(critic.eval(), ids, mask, width, response_mask)
    critic.train()
    last = mask.sum(1) - 1  # right-padded responses: the last real token
    scores = reward.score(hidden(reward, ids, mask)[torch.arange(len(ids)), last]).squeeze(-1)
    ended = ((response == eos) & (response_mask > 0)).any(1)
    scores = torch.where(ended, scores, scores - MISSING_EOS_PENALTY)
    return BareRollout(ids, mask, response, response_mask, logps, values), ref, scores


def bare_advantages(rollout: BareRollout, ref: torch.Tensor, scores: torch.Tensor) -> None:
    """k1 KL penalty + score on the last token, GAE, whitened advantages (set on the rollout)."""
    mask = rollout.response_mask.float()
    rewards = -KL_COEF * (rollout.logps - ref) * mask
    rewards[torch.arange(len(scores)), mask.sum(1).long() - 1] += scores
    values, steps = rollout.values * mask, mask.shape[1]
    advantages, running = torch.zeros_like(rewards), torch.zeros(len(scores))
    for t in reversed(range(steps)):
        following = values[:, t + 1] if t + 1 < steps else torch.zeros(len(scores))
        running = rewards[:, t] + GAMMA * following - values[:, t] + GAMMA * LAM * running
        advantages[:, t] = running
    advantages = advantages * mask
    rollout.returns = advantages + values
    mean = advantages.sum() / mask.sum()
    variance = ((advantages - mean).square() * mask).sum() / (mask.sum() - 1)
    rollout.advantages = (advantages - mean) * torch.rsqrt(variance + 1e-8) * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum()


def minibatch_loss(nets, rollout: BareRollout, rows: torch.Tensor) -> torch.Tensor:
    """Clipped surrogate policy loss + ``vf_coef`` x clipped value loss on some rows."""
    policy, _, critic, _ = nets
    width = rollout.ids.shape[1] - rollout.response.shape[1]
    ids, mask, response = rollout.ids[rows], rollout.mask[rows], rollout.response[rows]
    response_mask, advantages = rollout.response_mask[rows], rollout.advantages[rows]
    ratio = torch.exp(response_logps(policy, ids, mask, width, response, response_mask)
                      - rollout.logps[rows])
    surrogate = torch.maximum(-advantages * ratio,
                              -advantages * ratio.clamp(1 - CLIP, 1 + CLIP))
    values, old = critic_values(critic, ids, mask, width, response_mask), rollout.values[rows]
    clipped = old + (values - old).clamp(-CLIP_VALUE, CLIP_VALUE)
    returns = rollout.returns[rows]
    errors = torch.maximum((values - returns).square(), (clipped - returns).square())
    return masked_mean(surrogate, response_mask) + VF_COEF * 0.5 * masked_mean(errors,
                                                                                response_mask)


def bare_update(nets, optimizer, rollout: BareRollout, shape: PPOShape) -> None:
    """``ppo_epochs`` passes of shuffled minibatches, one clipped AdamW step each."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    minibatch = shape.rollouts // shape.num_minibatches
    for _ in range(shape.ppo_epochs):
        for rows in torch.randperm(len(rollout.ids)).split(minibatch):
            loss = minibatch_loss(nets, rollout, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()


def bare_run(workload: tuple[Size, PPOShape]) -> dict:
    """Bare PyTorch: sample, score, shape + GAE, update, each phase timed."""
    size, shape = workload
    with PeakMemory() as memory:
        tok = tokenizer(size)
        nets = networks(size, tok)
        policy, _, critic, _ = nets
        optimizer = torch.optim.AdamW([{"params": policy.parameters(), "lr": LR},
                                       {"params": critic.parameters(), "lr": LR}])
        prompts = torch.tensor(prompt_ids(size, shape, tok)).split(shape.prompts)
        ends, phases = [], []
        for batch in prompts:
            start = time.perf_counter()
            prompt = batch.repeat_interleave(shape.samples_per_prompt, 0)
            prompt_mask = torch.ones_like(prompt)  # every prompt has the same length
            response, response_mask = bare_sample(policy, prompt, prompt_mask,
                                                  size.response_tokens, tok.eos_token_id,
                                                  tok.pad_token_id)
            sampled = time.perf_counter()
            rollout, ref, scores = bare_score(nets, prompt, prompt_mask, response, response_mask,
                                              tok.eos_token_id)
            scored = time.perf_counter()
            bare_advantages(rollout, ref, scores)
            shaped = time.perf_counter()
            bare_update(nets, optimizer, rollout, shape)
            ends.append(time.perf_counter())
            phases.append({"generation_s": sampled - start, "scoring_s": scored - sampled,
                           "update_s": ends[-1] - shaped})
    return {**steady(ends, phases, shape), **memory.figures()}


# ------------------------------------------------------------------------------- main
RUNS = {"leash": leash_run, "bare": bare_run}
TABLE = Table(
    columns={"total_s": "iteration s", "generation_s": "generation s", "scoring_s": "scoring s",
             "update_s": "update s", "other_s": "other s", "rollouts_per_s": "rollouts/s",
             "peak_mib": "peak MiB"},
    compared=["total_s", "generation_s", "scoring_s", "update_s", "other_s", "rollouts_per_s",
              "peak_mib"],
    pairs=[("leash", "bare")],
)


def run_both(name: str, _round: int, chosen: dict) -> dict:
    """One contender on every size, each size in a fork of this process."""
    return {size: forked(RUNS[name], workload) for size, workload in chosen.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few iterations, one round")
    args = parser.parse_args()
    single_thread()
    for module in IMPORTS:
        importlib.import_module(module)
    chosen = workloads(args.quick)
    rounds = 1 if args.quick else args.rounds
    started = time.perf_counter()
    results = interleave(list(RUNS), rounds, lambda name, index: run_both(name, index, chosen))
    report("ppo_vs_bare", results, TABLE, {
        "command": "python benchmarks/ppo_vs_bare.py "
                   + ("--quick" if args.quick else f"--rounds {rounds}"),
        "settings": {
            "rounds": rounds, "lr": LR, "critic_lr": LR, "max_grad_norm": MAX_GRAD_NORM,
            "kl_coef": KL_COEF, "kl_estimator": "k1", "gamma": GAMMA, "lam": LAM,
            "clip_range": CLIP, "clip_range_value": CLIP_VALUE, "vf_coef": VF_COEF,
            "missing_eos_penalty": MISSING_EOS_PENALTY, "whiten_advantages": True,
            "temperature": 1.0, "dtype": "float32",
            "sizes": {name: {**asdict(size), **asdict(shape)}
                      for name, (size, shape) in chosen.items()},
        },
        "definitions": {
            "total_s": "mean seconds of a timed iteration, iteration end to iteration end",
            "generation_s": "sampling the responses", "scoring_s": "log-probs, reference "
            "log-probs, values and reward of the rollout", "update_s": "every minibatch update",
            "other_s": "total_s minus the three phases: shaping, GAE, statistics, the loop",
            "rollouts_per_s": "rollouts x timed iterations / their seconds",
            "peak_mib": "peak RSS of the run's fork over the RSS it started with (both "
                        "contenders fork from the same process, so the same baseline)",
        },
        "notes": NOTES,
        "environment": environment(threads=1),
        "wall_s": time.perf_counter() - started,
    })


if __name__ == "__main__":
    main()
