"""What every strategy shares: the filter, hints, and the explanation.

A strategy only ranks the candidates the filter left: :meth:`Strategy.rank`
returns the chosen candidate's position, the score components of every
candidate (arrays, one value per candidate; ``score`` is the one they are
listed by, highest first) and why the chosen one won. :meth:`Strategy.select`
does the rest, the same for all: filter, hints, explanation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ymera.routing.filter import OK, eligible, reason_text
from ymera.routing.fleet import Fleet
from ymera.routing.types import AgentSlot, Decision, TaskView

# Explanations list at most this many candidates (best first) and rejected
# agents; the totals and the count per reason are always complete.
MAX_LISTED = 20


@dataclass
class Ranking:
    chosen: int  # position in the candidate array
    parts: dict[str, np.ndarray]  # score components, one value per candidate
    why: str
    extra: dict[str, Any] | None = None  # strategy-level facts (e.g. learning mode)


class Strategy:
    """Base of every strategy: subclasses set ``name`` and implement :meth:`rank`."""

    name: ClassVar[str] = ""

    def __init__(self, *, seed: int | None = None, **params: Any) -> None:
        self.rng = np.random.default_rng(seed)
        self.params = params

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        raise NotImplementedError

    # The Router protocol (the dispatcher's call): a fleet of the slots given.
    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision:
        return self.select(task, Fleet.from_slots(agents))

    def select(self, task: TaskView, fleet: Fleet, *, explain: bool = True) -> Decision:
        found = eligible(task, fleet)
        rows = found.candidates
        if len(rows) == 0:
            return Decision(
                None, self._explain(task, fleet, found.codes, rows, None) if explain else {}
            )
        ranking = self.rank(task, fleet, rows)
        row = int(rows[ranking.chosen])
        if not explain:
            return Decision(fleet.ids[row], {})
        why = (
            "preferred by the task's routing hints; " + ranking.why
            if found.preferred
            else ranking.why
        )
        ranking.why = why
        return Decision(fleet.ids[row], self._explain(task, fleet, found.codes, rows, ranking))

    def _explain(
        self,
        task: TaskView,
        fleet: Fleet,
        codes: np.ndarray,
        rows: np.ndarray,
        ranking: Ranking | None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.name, "chosen": None}
        candidates: list[dict[str, Any]] = []
        if ranking is not None:
            score = ranking.parts.get("score")
            if score is None:
                order = np.arange(min(len(rows), MAX_LISTED))
            elif len(rows) > MAX_LISTED:
                top = np.argpartition(-score, MAX_LISTED)[:MAX_LISTED]
                order = top[np.argsort(-score[top], kind="stable")]
            else:
                order = np.argsort(-score, kind="stable")
            listed = [int(p) for p in order]
            if ranking.chosen not in listed:
                listed = [ranking.chosen, *listed[: MAX_LISTED - 1]]
            names = list(ranking.parts)
            at = np.asarray(listed)
            columns = [_plain(ranking.parts[k][at]) for k in names]
            for j, pos in enumerate(listed):
                row = int(rows[pos])
                candidates.append(
                    {
                        "agent_id": fleet.ids[row],
                        "name": fleet.names[row],
                        "score": {k: col[j] for k, col in zip(names, columns, strict=True)},
                    }
                )
            row = int(rows[ranking.chosen])
            out["chosen"] = {
                "agent_id": fleet.ids[row],
                "name": fleet.names[row],
                "why": ranking.why,
            }
            if ranking.extra:
                out.update(ranking.extra)
        out["candidates"] = candidates
        out["candidates_total"] = len(rows)
        bad = np.flatnonzero(codes != OK)
        out["rejected"] = [
            {
                "agent_id": fleet.ids[int(r)],
                "name": fleet.names[int(r)],
                "reason": reason_text(int(codes[r]), task, fleet, int(r)),
            }
            for r in bad[:MAX_LISTED]
        ]
        out["rejected_total"] = len(bad)
        return out


def _plain(values: np.ndarray) -> list[Any]:
    """JSON-ready values (floats to 4 decimals; NaN and infinities to None)."""
    out: list[Any] = values.tolist()
    if values.dtype.kind == "f":
        out = [round(v, 4) if math.isfinite(v) else None for v in out]
    return out


def load_ratio(fleet: Fleet, rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = fleet.load[rows] / np.maximum(fleet.capacity[rows], 1)
    return out
