"""The one error of the converters: its message is the one line the user sees."""

from __future__ import annotations


class ConversionError(ValueError):
    """A source that cannot be converted, or an output that cannot be written: one line naming the problem."""
