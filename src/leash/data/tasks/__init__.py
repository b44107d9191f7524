"""Built-in tasks with a gold reward (offline, generated locally from a seed)."""

from __future__ import annotations

from leash.data.tasks.reward import REWARD_BOUNDS, GoldReward
from leash.data.tasks.synthetic import SyntheticTask

__all__ = ["REWARD_BOUNDS", "GoldReward", "SyntheticTask"]
