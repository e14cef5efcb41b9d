"""Deferred Ctrl-C / SIGTERM: a training step always completes before the run stops.

An interrupt that lands inside a step (optimizer half-stepped, RNG advanced, step not counted)
must not be checkpointed. Inside :class:`DeferredInterrupt` the first SIGINT or SIGTERM only sets
``requested``; the trainer checks it between steps, saves the last complete step and stops. A
second Ctrl-C raises ``KeyboardInterrupt`` at once (nothing is saved; the last checkpoint stands).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class DeferredInterrupt:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()
