"""The routing strategies, one module each, all behind :class:`Strategy`."""

from __future__ import annotations

from typing import Any

from ymera.routing.strategies.base import Strategy
from ymera.routing.strategies.capability_match import CapabilityMatch
from ymera.routing.strategies.learned import Learned
from ymera.routing.strategies.least_loaded import LeastLoaded
from ymera.routing.strategies.power_of_two import PowerOfTwo
from ymera.routing.strategies.round_robin import RoundRobin
from ymera.routing.strategies.weighted import Weighted

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (RoundRobin, LeastLoaded, PowerOfTwo, CapabilityMatch, Weighted, Learned)
}
DEFAULT_STRATEGY = LeastLoaded.name


def make(name: str, **params: Any) -> Strategy:
    return STRATEGIES[name](**params)


__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "CapabilityMatch",
    "Learned",
    "LeastLoaded",
    "PowerOfTwo",
    "RoundRobin",
    "Strategy",
    "Weighted",
    "make",
]
