"""Errors the model code raises on purpose."""

from __future__ import annotations


class NotEnoughData(ValueError):
    """The data cannot support a model (too short a span, or a window without both classes).

    A condition of the data, not a fault: the training records the reason and the pipeline
    goes on without that model."""
