"""The fleet as arrays: what every strategy reads to decide.

A :class:`Fleet` holds one row per agent in numpy arrays (load, capacity, hard
limit, routable, circuit, ejection, weight) and a capability matrix (one column
per capability, NaN where the agent lacks it). The static part of eligibility
(handled task types, agent type, capabilities) is computed once per task shape
and cached until an agent is added, so a decision over 10,000 agents costs a few
vector operations, never a Python loop over every agent.

The dispatcher builds a small fleet from its slots per decision
(:meth:`Fleet.from_slots`); the simulator keeps one and updates it in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ymera.routing.types import UNROUTABLE_STATUSES, AgentSlot

ShapeKey = tuple[str, tuple[str, ...], str | None]


class Fleet:
    """Agents as arrays. Mutate ``load``, ``routable``, ``ejected`` … in place;
    call :meth:`add` to register agents (that invalidates the shape cache)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.names: list[str] = []
        self.agent_types: list[str | None] = []
        self.task_types: list[frozenset[str] | None] = []
        self.by_key: dict[str, int] = {}  # agent id or name -> row
        self._cap_rows: list[dict[str, float]] = []
        self.load = np.zeros(0, dtype=np.int64)
        self.capacity = np.zeros(0, dtype=np.int64)
        self.limit = np.zeros(0, dtype=np.float64)  # hard limit on load (capacity rule)
        self.routable = np.zeros(0, dtype=bool)
        self.statuses: list[str] = []
        self.circuit_open = np.zeros(0, dtype=bool)
        self.ejected = np.zeros(0, dtype=bool)
        self.weight = np.zeros(0, dtype=np.float64)
        self.caps: dict[str, np.ndarray] = {}
        self.version = 0
        self._shapes: dict[ShapeKey, tuple[np.ndarray, np.ndarray]] = {}
        # Per-fleet caches strategies keep (keyed by their own objects).
        self.cache: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    # --- building -------------------------------------------------------------------

    def add(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        capabilities: dict[str, float] | None = None,
        capacity: int = 1,
        load: int = 0,
        limit: float | None = None,
        task_types: Iterable[str] | None = None,
        agent_type: str | None = None,
        status: str = "IDLE",
        circuit_open: bool = False,
        weight: float = 1.0,
        rebuild: bool = True,
    ) -> int:
        """Register an agent; returns its row. ``limit``: the most load it may
        carry (default: its capacity; the simulator lets agents queue)."""
        row = len(self.ids)
        self.ids.append(agent_id)
        self.names.append(name or agent_id)
        self.agent_types.append(agent_type)
        self.task_types.append(frozenset(task_types) if task_types is not None else None)
        self.by_key.setdefault(agent_id, row)
        self.by_key.setdefault(name or agent_id, row)
        self._cap_rows.append(dict(capabilities or {}))
        self.statuses.append(status)
        self._grow(row + 1)
        self.load[row] = load
        self.capacity[row] = capacity
        self.limit[row] = float(capacity if limit is None else limit)
        self.routable[row] = status not in UNROUTABLE_STATUSES
        self.circuit_open[row] = circuit_open
        self.ejected[row] = False
        self.weight[row] = weight
        if rebuild:
            self._invalidate()
        return row

    def rebuild(self) -> None:
        """After adding many agents with ``rebuild=False``."""
        self._invalidate()

    _ARRAYS = ("load", "capacity", "limit", "routable", "circuit_open", "ejected", "weight")

    def _grow(self, n: int) -> None:
        """Arrays of length ``n`` (amortised: one copy per doubling)."""
        store: dict[str, np.ndarray] = self.__dict__.setdefault("_store", {})
        size = len(store["load"]) if store else 0
        if n > size:
            new = max(n, 2 * size, 16)
            for name in self._ARRAYS:
                old = getattr(self, name)
                arr = np.zeros(new, dtype=old.dtype)
                arr[: len(old)] = old
                store[name] = arr
        for name in self._ARRAYS:
            setattr(self, name, store[name][:n])

    def _invalidate(self) -> None:
        n = len(self.ids)
        self.caps = {}
        for i, row in enumerate(self._cap_rows):
            for cap, level in row.items():
                col = self.caps.get(cap)
                if col is None:
                    col = self.caps[cap] = np.full(n, np.nan)
                col[i] = level
        self.version += 1
        self._shapes.clear()
        self.cache.clear()

    @classmethod
    def from_slots(cls, slots: list[AgentSlot], weights: dict[str, float] | None = None) -> Fleet:
        """A fleet of the dispatcher's slots (built at once, no per-add rebuild)."""
        fleet = cls()
        n = len(slots)
        fleet.ids = [s.agent_id for s in slots]
        fleet.names = [s.name for s in slots]
        fleet.agent_types = [s.agent_type for s in slots]
        fleet.task_types = [s.task_types for s in slots]
        for i, s in enumerate(slots):
            fleet.by_key.setdefault(s.agent_id, i)
            fleet.by_key.setdefault(s.name, i)
        fleet._cap_rows = [s.capabilities for s in slots]
        fleet.statuses = [s.status for s in slots]
        fleet.load = np.fromiter((s.load for s in slots), dtype=np.int64, count=n)
        fleet.capacity = np.fromiter((s.max_concurrency for s in slots), dtype=np.int64, count=n)
        fleet.limit = fleet.capacity.astype(np.float64)
        fleet.routable = np.fromiter(
            (s.status not in UNROUTABLE_STATUSES for s in slots), dtype=bool, count=n
        )
        fleet.circuit_open = np.fromiter((s.circuit_open for s in slots), dtype=bool, count=n)
        fleet.ejected = np.fromiter((s.ejected for s in slots), dtype=bool, count=n)
        w = weights or {}
        fleet.weight = np.fromiter(
            (w.get(s.agent_id, w.get(s.name, 1.0)) for s in slots), dtype=np.float64, count=n
        )
        fleet._invalidate()
        return fleet

    def set_status(self, row: int, status: str) -> None:
        self.statuses[row] = status
        self.routable[row] = status not in UNROUTABLE_STATUSES

    # --- reading --------------------------------------------------------------------

    def proficiency(self, rows: np.ndarray, required: list[str]) -> np.ndarray:
        """Mean proficiency of ``rows`` on the required capabilities (0 when none
        is required)."""
        if not required:
            return np.zeros(len(rows))
        total = np.zeros(len(rows))
        for cap in required:
            col = self.caps.get(cap)
            if col is not None:
                total += np.nan_to_num(col[rows])
        return total / len(required)

    def typed_rows(self) -> np.ndarray:
        """Rows of agents that take only the task types they declare (cached)."""
        rows = self.cache.get("typed_rows")
        if rows is None:
            rows = self.cache["typed_rows"] = np.flatnonzero(
                np.fromiter((t is not None for t in self.task_types), bool, len(self.task_types))
            )
        out: np.ndarray = rows
        return out

    def shape(self, key: ShapeKey) -> tuple[np.ndarray, np.ndarray] | None:
        return self._shapes.get(key)

    def remember_shape(self, key: ShapeKey, value: tuple[np.ndarray, np.ndarray]) -> None:
        self._shapes[key] = value
