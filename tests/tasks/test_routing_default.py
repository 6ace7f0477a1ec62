"""The default routing policy (capability match, then least loaded) and its explanations."""

from __future__ import annotations

from ymera.tasks.routing import AgentSlot, LeastLoaded, TaskView


def slot(name: str, load: int = 0, cap: int = 4, **kw: object) -> AgentSlot:
    caps = kw.pop("caps", {"py": 0.5})
    return AgentSlot(
        agent_id=name, name=name, capabilities=caps, load=load, max_concurrency=cap, **kw
    )  # type: ignore[arg-type]


def test_least_loaded_among_capable_then_proficiency() -> None:
    router = LeastLoaded()
    task = TaskView(id="t", type="x", required_capabilities=["py"])
    agents = [
        slot("busy", load=3),
        slot("free-novice", caps={"py": 0.2}),
        slot("free-expert", caps={"py": 0.9}),
        slot("no-py", caps={"go": 1.0}),
    ]
    decision = router.choose(task, agents)
    assert decision.agent_id == "free-expert"
    rejected = {r["name"]: r["reason"] for r in decision.explanation["rejected"]}
    assert rejected == {"no-py": "missing capabilities: py"}
    assert [c["name"] for c in decision.explanation["candidates"]] == [
        "free-expert",
        "free-novice",
        "busy",
    ]


def test_hints_and_handled_types() -> None:
    router = LeastLoaded()
    agents = [slot("a"), slot("b", load=2), slot("c", task_types=frozenset({"other"}))]
    preferred = TaskView(id="t", type="x", required_capabilities=[], preferred_agents=["b"])
    assert router.choose(preferred, agents).agent_id == "b"
    excluded = TaskView(id="t", type="x", required_capabilities=[], excluded_agents=["a", "b"])
    decision = router.choose(excluded, agents)
    assert decision.agent_id is None
    reasons = {r["name"]: r["reason"] for r in decision.explanation["rejected"]}
    assert reasons["c"] == "has no handler for task type 'x'"
    assert reasons["a"] == "excluded by the task's routing hints"


def test_full_agents_are_skipped() -> None:
    decision = LeastLoaded().choose(
        TaskView(id="t", type="x", required_capabilities=[]), [slot("full", load=4)]
    )
    assert decision.agent_id is None
    assert decision.explanation["rejected"][0]["reason"] == "no free capacity"


def test_preferred_only_waits_for_the_pinned_agent() -> None:
    router = LeastLoaded()
    agents = [slot("a"), slot("b", load=4)]
    pinned = TaskView(
        id="t", type="x", required_capabilities=[], preferred_agents=["b"], preferred_only=True
    )
    decision = router.choose(pinned, agents)
    assert decision.agent_id is None
    reasons = {r["name"]: r["reason"] for r in decision.explanation["rejected"]}
    assert reasons == {
        "a": "not one of the task's preferred agents (preferred_only)",
        "b": "no free capacity",
    }
    agents[1].load = 1
    decision = router.choose(pinned, agents)
    assert decision.agent_id == "b"
    assert decision.explanation["chosen"]["why"].startswith("preferred")
