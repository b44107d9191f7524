"""The one error for data that cannot be used as configured."""

from __future__ import annotations


class DataError(ValueError):
    """A data file that cannot be read, a split without usable rows, bad rows under
    ``data.bad_rows=error``: the message names the file (and line) or the key, and is all a
    user needs, so ``leash train`` prints it alone, without a traceback."""
