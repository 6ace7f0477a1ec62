"""power_of_two: two eligible agents drawn at random; the less loaded (by load
ratio, then proficiency) wins. Near least-loaded balance at O(1) cost."""

from __future__ import annotations

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.strategies.base import Ranking, Strategy, load_ratio
from ymera.routing.types import TaskView


class PowerOfTwo(Strategy):
    name = "power_of_two"

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        n = len(rows)
        picks = self.rng.choice(n, size=min(2, n), replace=False)
        ratio = load_ratio(fleet, rows)
        prof = fleet.proficiency(rows, task.required_capabilities)
        sampled = np.zeros(n, dtype=bool)
        sampled[picks] = True
        best = min(picks, key=lambda p: (ratio[p], -prof[p]))
        score = np.where(sampled, 1.0 - ratio, -1.0)
        return Ranking(
            int(best),
            {"score": score, "sampled": sampled, "load_ratio": ratio, "proficiency": prof},
            "less loaded of two agents drawn at random",
        )
