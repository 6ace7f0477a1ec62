"""What every strategy shares: the filter, hints, and the explanation.

A strategy only ranks the candidates the filter left: :meth:`Strategy.rank`
returns the chosen candidate's position, the score components of every
candidate (arrays, one value per candidate; ``score`` is the one they are
listed by, highest first) and why the chosen one won. :meth:`Strategy.select`
does the rest, the same for all: filter, hints, explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ymera.routing.filter import NOT_ROUTABLE, OK, eligible, reason_text
from ymera.routing.fleet import Fleet
from ymera.routing.types import AgentSlot, Decision, Round, TaskView

# Explanations list at most this many candidates (best first) and rejected
# agents; the totals and the count per reason are always complete.
MAX_LISTED = 20


@dataclass
class Ranking:
    chosen: int  # position in the candidate array
    parts: dict[str, np.ndarray]  # score components, one value per candidate (or per subset)
    why: str
    extra: dict[str, Any] | None = None  # strategy-level facts (e.g. learning mode)
    # When set: the positions (in the candidate array) ``parts`` are given for,
    # the only ones a strategy scored (a shortlist of a large candidate set).
    subset: np.ndarray | None = None


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

    def round(self, agents: list[AgentSlot]) -> Round:
        """A claim's decisions over one fleet, built once (:class:`FleetRound`)."""
        return FleetRound(self, agents)

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
            sub = ranking.subset
            scored = len(rows) if sub is None else len(sub)
            if score is None:
                order = np.arange(min(scored, MAX_LISTED))
            elif scored > MAX_LISTED:
                top = np.argpartition(-score, MAX_LISTED)[:MAX_LISTED]
                order = top[np.argsort(-score[top], kind="stable")]
            else:
                order = np.argsort(-score, kind="stable")
            listed: list[int] = order.tolist()
            chosen = ranking.chosen
            if sub is not None:
                chosen = int(np.flatnonzero(sub == ranking.chosen)[0])
            if chosen not in listed:
                listed = [chosen, *listed[: MAX_LISTED - 1]]
            names = list(ranking.parts)
            at = np.asarray(listed)
            columns = _columns([ranking.parts[k][at] for k in names])
            fleet_rows: list[int] = rows[at if sub is None else sub[at]].tolist()
            ids, agent_names = fleet.ids, fleet.names
            # Each candidate's parts: the columns' values at its place (transposed
            # once; a dict built from pairs in C, not a comprehension per candidate).
            for row, values in zip(fleet_rows, zip(*columns, strict=True), strict=True):
                candidates.append(
                    {
                        "agent_id": ids[row],
                        "name": agent_names[row],
                        "score": dict(zip(names, values, strict=True)),
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
        out["rejected"] = _rejections(task, fleet, bad[:MAX_LISTED], codes)
        out["rejected_total"] = len(bad)
        return out


def _rejections(
    task: TaskView, fleet: Fleet, rows: np.ndarray, codes: np.ndarray
) -> list[dict[str, Any]]:
    """The listed rejected agents with their reasons. An entry depends only on
    the agent, its reason code and the task's shape (a status aside), so the
    fleet keeps each one built for the next decision (shared, never changed):
    most rejections repeat from decision to decision."""
    key = ("rejected", task.type, tuple(task.required_capabilities), task.agent_type)
    known: dict[tuple[int, int], dict[str, Any]] | None = fleet.cache.get(key)
    if known is None:
        known = fleet.cache[key] = {}
    out = []
    for row, code in zip(rows.tolist(), codes[rows].tolist(), strict=True):
        entry = known.get((row, code))
        if entry is None:
            entry = {
                "agent_id": fleet.ids[row],
                "name": fleet.names[row],
                "reason": reason_text(code, task, fleet, row),
            }
            if code != NOT_ROUTABLE:  # (its words name the status, which may change)
                known[(row, code)] = entry
        out.append(entry)
    return out


def _columns(values: list[np.ndarray]) -> list[list[Any]]:
    """JSON-ready columns (floats to 4 decimals; NaN and infinities to None),
    rounded in one vector operation (a per-value ``round`` was most of the cost
    of explaining a decision)."""
    out: list[list[Any]] = [[] for _ in values]
    floats = [i for i, v in enumerate(values) if v.dtype.kind == "f"]
    for i, v in enumerate(values):
        if v.dtype.kind != "f":
            out[i] = v.tolist()
    if floats:
        block = np.vstack([values[i] for i in floats])
        finite = np.isfinite(block)
        rounded = np.round(np.where(finite, block, 0.0), 4).tolist()
        if not finite.all():  # (a learned score is -inf where not plausible)
            for i, j in zip(*np.nonzero(~finite), strict=True):
                rounded[i][j] = None
        for i, row in zip(floats, rounded, strict=True):
            out[i] = row
    return out


def load_ratio(fleet: Fleet, rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = fleet.load[rows] / np.maximum(fleet.capacity[rows], 1)
    return out


class RoundLoads:
    """What every round over a :class:`Fleet` keeps: the claim's slots by id and
    the fleet's loads in step with them as tasks are assigned."""

    by_id: dict[str, AgentSlot]
    _fleet: Fleet | None

    def _sync(self, slot: AgentSlot) -> None:
        if self._fleet is not None:
            row = self._fleet.by_key.get(slot.agent_id)
            if row is not None:
                self._fleet.load[row] = slot.load

    def took(self, agent_id: str) -> None:
        slot = self.by_id[agent_id]
        slot.load += 1
        self._sync(slot)

    def full(self, agent_id: str) -> None:
        slot = self.by_id[agent_id]
        slot.load = max(slot.load, slot.max_concurrency)
        self._sync(slot)


class FleetRound(RoundLoads):
    """A round of decisions over one :class:`Fleet` of the agents that have room,
    built once (the filter's static part is then cached per task shape, and a
    strategy's own per-fleet caches last the round); loads kept in step with
    the slots as tasks are assigned."""

    def __init__(self, strategy: Strategy, agents: list[AgentSlot]) -> None:
        self.strategy = strategy
        self.by_id = {a.agent_id: a for a in agents}
        self.slots = [a for a in agents if a.free > 0]
        self._fleet = None

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet.from_slots(self.slots)
        return self._fleet

    def choose(self, task: TaskView) -> Decision:
        return self.strategy.select(task, self.fleet)
