"""weighted: a random eligible agent, with probability proportional to its
static weight (policy parameter ``weights``: agent id or name -> weight;
agents not named weigh ``default_weight``, 1 unless set)."""

from __future__ import annotations

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.strategies.base import Ranking, Strategy
from ymera.routing.types import TaskView


class Weighted(Strategy):
    name = "weighted"

    def _weights(self, fleet: Fleet, rows: np.ndarray) -> np.ndarray:
        named: dict[str, float] = self.params.get("weights") or {}
        default = float(self.params.get("default_weight", 1.0))
        if not named:
            return np.where(fleet.weight[rows] != 1.0, fleet.weight[rows], default)
        key = ("weighted", id(self), fleet.version)
        table = fleet.cache.get(key)
        if table is None:
            table = np.array(
                [
                    float(named.get(i, named.get(n, default)))
                    for i, n in zip(fleet.ids, fleet.names, strict=True)
                ]
            )
            fleet.cache[key] = table
        out: np.ndarray = table[rows]
        return out

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        w = np.maximum(self._weights(fleet, rows), 0.0)
        total = w.sum()
        p = w / total if total > 0 else np.full(len(rows), 1.0 / len(rows))
        chosen = int(self.rng.choice(len(rows), p=p))
        return Ranking(
            chosen,
            {"score": p, "weight": w, "probability": p},
            "drawn at random in proportion to the static weights",
        )
