"""`ymera routing policy ...` and `ymera learning ...`: the routing policy and
what the learning engine knows, through the HTTP API (``ymera.client``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, api, when
from ymera.cli.common import console, table

app = typer.Typer(help="Routing policies (global and per task type).", no_args_is_help=True)
policy_app = typer.Typer(
    help="Show, set or remove routing policies (--url / YMERA_URL, --api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")
learning_app = typer.Typer(
    help="What the learning engine knows per (agent, task type); reset it.",
    no_args_is_help=True,
)

STRATEGIES = ("round_robin", "least_loaded", "power_of_two", "capability_match", "weighted")
MODES = ("PASSIVE", "ACTIVE", "REINFORCEMENT")


def _params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("the parameters must be a JSON object")
    return value


@policy_app.command("show")
def show(url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """The global policy and the per-task-type overrides."""
    with api(url, api_key) as client:
        policies = client.get_routing_policy()
    rows = table("task type", "strategy", "mode", "params", "updated", "by")
    for p in [policies["default"], *policies["per_type"]]:
        rows.add_row(
            escape(p["task_type"] or "* (global)"),
            p["strategy"],
            p["mode"],
            escape(json.dumps(p["params"])) if p["params"] else "-",
            when(p["updated_at"]),
            escape(p["updated_by"] or "-"),
        )
    console.print(rows)


@policy_app.command("set")
def set_policy(
    strategy: Annotated[str, typer.Argument(help=f"One of {', '.join(STRATEGIES)}, learned.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    task_type: Annotated[
        str | None, typer.Option("--type", "-t", help="A task type's policy (default: global).")
    ] = None,
    mode: Annotated[str, typer.Option(help="Learning mode: " + ", ".join(MODES))] = "PASSIVE",
    params: Annotated[
        str | None,
        typer.Option(help='JSON, e.g. \'{"exploration": 0.5}\' or \'{"weights": {"a1": 2}}\'.'),
    ] = None,
) -> None:
    """Set the global policy, or a task type's with --type."""
    body = _params(params)
    with api(url, api_key) as client:
        p = client.set_routing_policy(strategy, task_type=task_type, mode=mode.upper(), params=body)
    scope = p["task_type"] or "global"
    console.print(f"{scope} policy: {p['strategy']} ({p['mode']})")


@policy_app.command("unset")
def unset(
    task_type: Annotated[str, typer.Argument(help="The task type whose policy to remove.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Remove a task type's policy (it follows the global one again)."""
    with api(url, api_key) as client:
        client.remove_routing_policy(task_type)
    console.print(f"removed the policy of {task_type}")


@learning_app.command("stats")
def stats(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    agent: Annotated[str | None, typer.Option("--agent", help="One agent's (id).")] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t", help="One task type's.")] = None,
) -> None:
    """Per (agent, task type): outcomes, success, latency, feedback, reward; and
    the agents outlier detection ejected."""
    with api(url, api_key) as client:
        body = client.learning_stats(agent_id=agent, task_type=task_type)
    rows = table("agent", "type", "outcomes", "success", "latency s", "feedback", "reward")
    for s in body["stats"]:
        feedback = (
            f"{s['feedback_mean']:.2f} ({s['feedback_count']:g})" if s["feedback_count"] else "-"
        )
        rows.add_row(
            s["agent_id"],
            escape(s["task_type"]),
            str(s["outcomes"]),
            f"{s['success_mean']:.3f}",
            f"{s['latency_expected']:.3f}",
            feedback,
            f"{s['expected_reward']:.3f}",
        )
    half_life = body["half_life_seconds"]
    rows.caption = (
        f"half-life {half_life:g}s" if half_life else "no discount"
    ) + f" · prior strength {body['prior_strength']:g}"
    console.print(rows)
    for e in body["ejected"]:
        console.print(
            f"ejected: {e['agent_id']} ({escape(e['reason'] or '-')}, {e['times']}x"
            + (", probation" if e["probation"] else "")
            + ")"
        )


@learning_app.command("reset")
def reset(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's (id).")] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this type's.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Forget what was learned: everything, or one agent's, or one task type's."""
    what = (
        " and ".join(
            x
            for x in (f"agent {agent}" if agent else "", f"type {task_type}" if task_type else "")
            if x
        )
        or "everything"
    )
    if not yes:
        typer.confirm(f"Forget what was learned about {what}?", abort=True)
    with api(url, api_key) as client:
        body = client.reset_learning(agent_id=agent, task_type=task_type)
    console.print(f"forgot {body['deleted']} learned statistics ({what})")
