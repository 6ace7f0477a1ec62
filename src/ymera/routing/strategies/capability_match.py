"""capability_match: the highest proficiency on the required capabilities among
agents with a free slot; ties go to the lower load ratio."""

from __future__ import annotations

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.strategies.base import Ranking, Strategy, load_ratio
from ymera.routing.types import TaskView


class CapabilityMatch(Strategy):
    name = "capability_match"

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        prof = fleet.proficiency(rows, task.required_capabilities)
        ratio = load_ratio(fleet, rows)
        chosen = int(np.lexsort((ratio, -prof))[0])
        return Ranking(
            chosen,
            {"score": prof - 1e-3 * ratio, "proficiency": prof, "load_ratio": ratio},
            "highest proficiency on the required capabilities",
        )
