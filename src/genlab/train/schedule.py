"""The learning-rate schedule: linear warm-up, cosine decay over the plan, and what extending a run does.

The plan is ``steps`` rounds or ``time_budget`` seconds, whichever ends first; the schedule
follows the fraction done, f = max(step / steps, elapsed / time_budget), and multiplies each
group's lr by m = min(1, (step + 1) / warmup) * (1 + cos(pi f)) / 2.

Extending a run (resuming with a larger ``--steps`` or more ``--time-budget``) moves the end of
the plan. Recomputing the cosine for the new end would jump the lr from ~0 at the old end to about
lr / 2, so instead the extension ramps linearly, over ``warmup`` steps, from the multiplier the
run last used to the new plan's cosine, and follows that cosine to 0 at the new end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Schedule:
    steps: int
    time_budget: float = 0.0
    warmup: int = 0
    restart_step: int | None = None  # where an extension began
    restart_from: float = 0.0  # ... and the multiplier it began from

    def fraction(self, step: int, elapsed: float) -> float:
        """Share of the plan done, in [0, 1]."""
        done = step / self.steps
        if self.time_budget:
            done = max(done, elapsed / self.time_budget)
        return min(done, 1.0)

    def __call__(self, step: int, elapsed: float) -> float:
        """The lr multiplier for the update after ``step`` rounds and ``elapsed`` seconds."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        base = warm * 0.5 * (1.0 + math.cos(math.pi * self.fraction(step, elapsed)))
        if self.restart_step is None:
            return base
        ramp = min(1.0, (step - self.restart_step + 1) / max(self.warmup, 1))
        return self.restart_from + (base - self.restart_from) * ramp

    def extend(self, steps: int, time_budget: float, step: int, last: float) -> None:
        """Move the plan's end on resume: ramp from ``last`` (the multiplier last used) at ``step``."""
        if (steps, time_budget) != (self.steps, self.time_budget):
            self.steps, self.time_budget = steps, time_budget
            self.restart_step, self.restart_from = step, last

    def state(self) -> dict:
        return {"steps": self.steps, "time_budget": self.time_budget, "restart_step": self.restart_step,
                "restart_from": self.restart_from}

    def load_state(self, state: dict) -> None:
        self.steps, self.time_budget = state["steps"], state["time_budget"]
        self.restart_step, self.restart_from = state["restart_step"], state["restart_from"]
