"""Training monitor: loss-spike detection, NaN/Inf guard, JSONL metrics log."""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

from genlab.algorithms.sliding_window import SlidingWindowMax
from genlab.errors import UserError


class SpikeDetector:
    """Flags a loss above ``factor`` x the maximum of the previous ``window`` losses.

    The running maximum comes from a monotonic deque (the streaming sliding-window maximum), so
    each step costs O(1) amortised however long the window is. Only positive losses are compared
    (a ratio test is meaningless around zero).
    """

    def __init__(self, window: int, factor: float) -> None:
        self.window, self.factor = window, factor
        self.history: deque[float] = deque(maxlen=window)
        self._max = SlidingWindowMax(window)
        self._current = -math.inf
        self.spikes = 0

    def update(self, loss: float) -> bool:
        """Record ``loss``; True if it is a spike relative to the window before it.

        Non-finite losses are not recorded: a NaN in the window would be its maximum and hide
        every spike until it left the window.
        """
        if not math.isfinite(loss):
            return False
        full = len(self.history) >= self.window
        spike = full and self._current > 0 and loss > self.factor * self._current
        self.spikes += spike
        self._current = self._max.push(loss)
        self.history.append(loss)
        return spike

    def state(self) -> dict[str, Any]:
        return {"history": list(self.history), "spikes": self.spikes}

    def load_state(self, state: dict[str, Any]) -> None:
        self.__init__(self.window, self.factor)
        for v in state["history"]:
            self.update(v)
        self.spikes = state["spikes"]


class NanGuard:
    """Counts updates skipped for a non-finite loss or gradient; raises after ``patience`` in a row.

    Called once per update, with the verdict on both the loss and the gradient norm, so a finite
    loss cannot reset the count that its NaN gradient should add to.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.total = 0
        self.in_a_row = 0

    def check(self, finite: bool, step: int) -> bool:
        """Record one update (``finite``: loss and gradients were finite); returns ``finite``."""
        if finite:
            self.in_a_row = 0
            return True
        self.total += 1
        self.in_a_row += 1
        if self.in_a_row >= self.patience:
            raise UserError(
                f"training diverged: loss or gradients were NaN/Inf for {self.in_a_row} steps in a "
                f"row (at step {step}); lower --lr, enable gradient clipping (grad_clip=1.0) or check the data"
            )
        return False


class JsonlLog:
    """Append-only JSONL metrics log (one JSON object per line), flushed every write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
