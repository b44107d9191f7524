"""Held-out statistics over a whole validation epoch, gathered from every process.

The reward model and DPO's implicit reward are both scored as classifiers of held-out pairs:
how often the predicted margin has the sign of the label or of the gold margin, and how well
predicted rewards correlate with the gold reward.
"""

from __future__ import annotations

import lightning
import torch


def sign_agreement(predicted: torch.Tensor, gold: torch.Tensor) -> torch.Tensor | None:
    """Fraction of pairs whose predicted margin has the sign of the gold margin.

    Pairs with a missing (NaN) or tied gold margin are left out; a zero predicted margin counts
    as a disagreement (as ``accuracy`` counts a tie as wrong).

    Args:
        predicted: (N,) predicted reward margins (chosen - rejected).
        gold: (N,) gold reward margins.
    Returns:
        a float32 scalar, or None when no pair has a usable gold margin.
    """
    usable = gold.isfinite() & (gold != 0)
    if not usable.any():
        return None
    return (predicted[usable].sign() == gold[usable].sign()).float().mean()


def pearson_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Pearson correlation of ``x`` and ``y`` over the entries where both are finite.

    Args:
        x: (N,) values.
        y: (N,) values.
    Returns:
        a float32 scalar, or None when it is undefined (fewer than 2 points, or zero variance).
    """
    usable = x.isfinite() & y.isfinite()
    x, y = x[usable].double(), y[usable].double()
    if len(x) < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    scale = (x.square().sum() * y.square().sum()).sqrt()
    if scale == 0:
        return None
    return ((x * y).sum() / scale).float()


def gather_epoch(
    module: lightning.LightningModule, chunks: list[torch.Tensor], rows: list[torch.Tensor]
) -> torch.Tensor:
    """Concatenate per-step values, gather them from every process, and keep one value per row.

    Under DDP the data module's sampler pads the shards to one length by repeating the first
    rows of the epoch (as ``DistributedSampler`` does), so that every process holds as many
    values; a row seen twice is counted once here, and the values come in row order, as one
    process gives them.

    Args:
        module: the module whose strategy gathers.
        chunks: per-step values, (B_i,) each.
        rows: per-step row ids of those values, (B_i,) each (e.g. ``batch.index``).
    Returns:
        (N,) the values of the N distinct rows of every process, by row id.
    """
    values = module.all_gather(torch.cat(chunks)).flatten()
    ids = module.all_gather(torch.cat(rows)).flatten()
    ids, order = ids.sort(stable=True)
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    return values[order][first]
