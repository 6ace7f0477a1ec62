"""Every strategy with real workers: the worker SDK over a real WebSocket to a
real server (loopback), on both backends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.fixtures.live import LiveServer
from tests.workflows.helpers import (
    create_workflow,
    make_agent,
    run_steps,
    running,
    start_run,
    wait_run,
)
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker


async def test_consensus_of_three_distinct_agents_with_one_dissenting(live: LiveServer) -> None:
    h = live.harness
    verdicts = {"judge-1": "approve", "judge-2": "reject", "judge-3": "approve"}
    workers: list[Worker] = []
    agents: dict[str, str] = {}
    for name, verdict in verdicts.items():
        agent, key = await make_agent(h, name, type="REVIEWER", capabilities=("review",))
        agents[agent["id"]] = name
        worker = Worker(live.base_url, key, concurrency=1)

        @worker.handler("judge")
        async def judge(ctx: TaskContext, verdict: str = verdict, name: str = name) -> Any:
            return {"verdict": verdict, "by": name, "code": ctx.input["code"]}

        workers.append(worker)
    # A CUSTOM agent with the capability is not a REVIEWER: never asked.
    _, other_key = await make_agent(h, "bystander", type="CUSTOM", capabilities=("review",))
    bystander = Worker(live.base_url, other_key, concurrency=4)

    @bystander.handler("judge")
    async def wrong(ctx: TaskContext) -> Any:
        raise AssertionError("a CUSTOM agent was asked to vote")

    wf = await create_workflow(
        h,
        {
            "name": "vote",
            "steps": [
                {
                    "id": "verdict",
                    "strategy": "CONSENSUS",
                    "agents": 3,
                    "task": {
                        "task_type": "judge",
                        "agent": {"type": "REVIEWER", "capabilities": ["review"]},
                        "input": {"code": "${input.code}"},
                    },
                    "decide": {"method": "majority", "field": "verdict"},
                }
            ],
            "output": {"decision": "${outputs.verdict.value}"},
        },
    )
    async with contextlib.AsyncExitStack() as stack:
        for worker in [*workers, bystander]:
            await stack.enter_async_context(running(worker))
        run = await start_run(h, wf["name"], {"code": "print(1)"})
        done = await wait_run(h, run["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"decision": "approve"}
    decision = next(s for s in done["steps"] if s["key"] == "verdict")["output"]
    voters = [agents[b["agent_id"]] for b in decision["votes"]]
    assert sorted(voters) == ["judge-1", "judge-2", "judge-3"]  # three distinct agents
    assert [agents[a] for a in decision["dissenters"]] == ["judge-2"]
    assert decision["agreed"] == 2
    assert decision["output"]["verdict"] == "approve"


async def test_conditional_takes_each_branch(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "brancher")
    worker = Worker(live.base_url, key, concurrency=4)

    @worker.handler("score")
    async def score(ctx: TaskContext) -> Any:
        return {"score": ctx.input["score"]}

    @worker.handler("act")
    async def act(ctx: TaskContext) -> Any:
        return {"did": ctx.input["what"]}

    wf = await create_workflow(
        h,
        {
            "name": "branches",
            "steps": [
                {"id": "rate", "task_type": "score", "input": {"score": "${input.score}"}},
                {
                    "id": "route",
                    "depends_on": ["rate"],
                    "strategy": "CONDITIONAL",
                    "branches": [
                        {
                            "name": "high",
                            "when": "outputs.rate.score >= `0.8`",
                            "steps": [
                                {"id": "ship", "task_type": "act", "input": {"what": "ship"}}
                            ],
                        },
                        {
                            "name": "low",
                            "when": "outputs.rate.score < `0.3`",
                            "steps": [
                                {"id": "drop", "task_type": "act", "input": {"what": "drop"}}
                            ],
                        },
                        {
                            "name": "otherwise",
                            "steps": [
                                {"id": "look", "task_type": "act", "input": {"what": "look"}}
                            ],
                        },
                    ],
                },
            ],
        },
    )
    expected = {0.9: ("high", "ship"), 0.1: ("low", "drop"), 0.5: ("otherwise", "look")}
    async with running(worker):
        runs = {s: await start_run(h, wf["name"], {"score": s}) for s in expected}
        for value, (branch, step_id) in expected.items():
            done = await wait_run(h, runs[value]["id"])
            assert done["status"] == "SUCCEEDED", done
            assert done["output"]["route"] == {"branch": branch, "output": {"did": step_id}}
            states = run_steps(done)
            assert states[step_id] == "SUCCEEDED"
            others = {"ship", "drop", "look"} - {step_id}
            assert {states[o] for o in others} == {"SKIPPED"}


async def test_parallel_quorum_cancels_the_straggler(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "fanout", max_concurrency=4)
    worker = Worker(live.base_url, key, concurrency=4)
    straggler_cancelled = asyncio.Event()

    @worker.handler("check")
    async def check(ctx: TaskContext) -> Any:
        if ctx.input["mode"] == "fail":
            raise TaskFailed("this check is broken", retryable=False)
        if ctx.input["mode"] == "hang":
            while not ctx.is_cancelled():
                await asyncio.sleep(0.01)
            straggler_cancelled.set()
            return {}
        return {"ok": ctx.input["mode"]}

    wf = await create_workflow(
        h,
        {
            "name": "quorum",
            "steps": [
                {
                    "id": "checks",
                    "strategy": "PARALLEL",
                    "join": "quorum",
                    "quorum": 2,
                    "steps": [
                        {"id": mode, "task_type": "check", "input": {"mode": mode}}
                        for mode in ("lint", "fail", "hang", "types")
                    ],
                }
            ],
        },
    )
    async with running(worker):
        run = await start_run(h, wf["name"], {})
        done = await wait_run(h, run["id"])
        await asyncio.wait_for(straggler_cancelled.wait(), 10)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"checks": {"lint": {"ok": "lint"}, "types": {"ok": "types"}}}
    states = run_steps(done)
    assert states["hang"] == "CANCELLED"
    # Its failure may be reported in the same group commit as the second success,
    # after the quorum was met and it was cancelled: either way it did not count.
    assert states["fail"] in ("FAILED", "CANCELLED")
    hang_task = next(s for s in done["steps"] if s["key"] == "hang")["task_id"]
    task = await h.client.get(f"/api/v1/tasks/{hang_task}", headers=await h.headers(Role.ADMIN))
    assert task.json()["status"] == "CANCELLED"


async def test_pipeline_feeds_each_output_to_the_next_step(live: LiveServer) -> None:
    h = live.harness
    _, dev_key = await make_agent(h, "dev", type="DEVELOPER")
    _, any_key = await make_agent(h, "generalist", type="CUSTOM")
    seen: dict[str, list[str]] = {"dev": [], "generalist": []}

    def make(name: str, key: str) -> Worker:
        worker = Worker(live.base_url, key, concurrency=2)

        @worker.handler("transform")
        async def transform(ctx: TaskContext) -> Any:
            seen[name].append(ctx.input["op"])
            text = ctx.input["text"]
            ops = {"strip": str.strip, "upper": str.upper, "exclaim": lambda s: s + "!"}
            return {"text": ops[ctx.input["op"]](text)}

        return worker

    developer_only = {"type": "DEVELOPER"}
    wf = await create_workflow(
        h,
        {
            "name": "pipe",
            "steps": [
                {
                    "id": "pipe",
                    "strategy": "PIPELINE",
                    "steps": [
                        {
                            "id": "strip",
                            "task_type": "transform",
                            "agent": developer_only,
                            "input": {"text": "${input.text}", "op": "strip"},
                        },
                        {
                            "id": "upper",
                            "task_type": "transform",
                            "agent": developer_only,
                            "input": {"text": "${prev.text}", "op": "upper"},
                        },
                        {
                            "id": "exclaim",
                            "task_type": "transform",
                            "agent": developer_only,
                            "input": {"text": "${prev.text}", "op": "exclaim"},
                        },
                    ],
                }
            ],
        },
    )
    async with running(make("dev", dev_key)), running(make("generalist", any_key)):
        run = await start_run(h, wf["name"], {"text": "  hello  "})
        done = await wait_run(h, run["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"pipe": {"text": "HELLO!"}}
    assert seen == {"dev": ["strip", "upper", "exclaim"], "generalist": []}
    inputs = {s["key"]: s["input"] for s in done["steps"]}
    assert inputs["upper"] == {"text": "hello", "op": "upper"}
