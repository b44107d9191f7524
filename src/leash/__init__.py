"""leash: DPO vs PPO-RLHF on the same preference data, with what each costs and buys."""

__version__ = "0.1.0"
