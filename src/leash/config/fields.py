"""Field helpers of the schema: declared bounds, and the error every check raises."""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


def positive(default: Any) -> Any:
    return field(default=default, metadata={"gt": 0})


def non_negative(default: Any) -> Any:
    return field(default=default, metadata={"ge": 0})


def fraction(default: float) -> Any:
    """A value in [0, 1)."""
    return field(default=default, metadata={"ge": 0, "lt": 1})


def seed_field(default: int) -> Any:
    """A seed: numpy and torch accept 0 <= seed < 2**32."""
    return field(default=default, metadata={"ge": 0, "lt": 2**32})
