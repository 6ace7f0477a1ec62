"""Routing policy and learning schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StrategyName = Literal[
    "round_robin", "least_loaded", "power_of_two", "capability_match", "weighted", "learned"
]
ModeName = Literal["PASSIVE", "ACTIVE", "REINFORCEMENT"]


class RewardWeightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    success: float = Field(default=1.0, ge=0, le=100)
    latency: float = Field(default=0.02, ge=0, le=100, description="Cost per second of latency.")
    feedback: float = Field(default=0.0, ge=0, le=100)


class PolicyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    weights: dict[str, float] | None = Field(
        default=None, description="weighted: agent id or name -> static weight."
    )
    default_weight: float | None = Field(default=None, ge=0)
    reward_weights: RewardWeightsIn | None = Field(
        default=None, description="learned (REINFORCEMENT): the reward's weights."
    )
    exploration: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "learned: how far each draw strays from the posterior mean"
            " (default 0.5; 1 = plain Thompson sampling, 0 = greedy)."
        ),
    )
    opportunity: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description=(
            "learned: weight of the opportunity cost of an agent's time (the shadow"
            " price of its slots in the fleet's fluid plan; default 0.5, 0: off)."
        ),
    )
    congestion: bool | None = Field(
        default=None,
        description=(
            "learned: price the wait as congestion (default true) or as the task's own delay only."
        ),
    )
    plausible: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description=(
            "learned: sample only candidates whose success mean + this many sd, net of"
            " the wait, could beat the best expected (default 1.5; 0: every candidate)."
        ),
    )


class PolicyIn(BaseModel):
    """A routing policy: the strategy and the learning mode."""

    model_config = ConfigDict(extra="forbid", strict=True)
    task_type: str | None = Field(
        default=None, min_length=1, max_length=100, description="Null: the global policy."
    )
    strategy: StrategyName = "least_loaded"
    mode: ModeName = "PASSIVE"
    params: PolicyParams = Field(default_factory=PolicyParams)


class PolicyOut(BaseModel):
    task_type: str | None
    strategy: str
    mode: str
    params: dict[str, Any]
    updated_at: datetime | None
    updated_by: str | None


class PolicySet(BaseModel):
    """The global policy and the per-task-type overrides."""

    default: PolicyOut
    per_type: list[PolicyOut]


class LearningStatOut(BaseModel):
    agent_id: str
    task_type: str
    outcomes: int
    weight: float = Field(description="Discounted outcomes.")
    alpha: float
    beta: float
    success_mean: float
    latency_expected: float
    latency_log_mu: float
    latency_log_sigma: float
    feedback_mean: float
    feedback_count: float
    expected_reward: float
    pooled_prior: dict[str, float]
    updated_at: datetime


class Ejection(BaseModel):
    agent_id: str
    reason: str | None
    times: int
    probation: bool


class LearningStats(BaseModel):
    half_life_seconds: float | None
    prior_strength: float
    stats: list[LearningStatOut]
    ejected: list[Ejection]


class ResetOut(BaseModel):
    deleted: int
