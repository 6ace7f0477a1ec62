"""docs/workflows.md's worked example, run as written: the page's YAML through
`ymera workflows create`, the page's workers (a DEVELOPER, a TESTER and a
REVIEWER agent), and the page's two `ymera workflows run ... --watch` commands,
whose trees and outputs must be the ones the page shows (real server, real
WebSocket workers; every backend)."""

from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, run
from tests.fixtures.live import LiveServer
from tests.workflows.helpers import make_agent, running
from ymera.worker import Worker

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def example() -> str:
    return DOC.read_text().split("## Worked example", 1)[1].split("\n## ", 1)[0]


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", example(), flags=re.S)
    return str(found)


def runs() -> list[tuple[list[str], list[str]]]:
    """The page's `$ ymera workflows run ...` blocks: (arguments, lines shown)."""
    found = []
    for text in re.findall(r"```\n(\$ ymera workflows run .*?)```", example(), flags=re.S):
        first, *lines = text.splitlines()
        found.append((shlex.split(first[2:])[1:], lines))
    return found


def shown(line: str) -> str | None:
    """A line as compared: agent ids and timings vary, ids and "..." are not shown."""
    if "01a2..." in line or line.strip() == "...":
        return None
    line = re.sub(r"\s+agent …\S+", "", line)
    return re.sub(r" · \d+\.\ds", "", line).rstrip()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_the_worked_example_runs_as_written(
    cli: Cli, live: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = live.harness
    # 1. One agent of each type, with its key.
    keys = {}
    for name, kind in (("dev-1", "DEVELOPER"), ("tester-1", "TESTER"), ("reviewer-1", "REVIEWER")):
        _, keys[kind] = await make_agent(h, name, type=kind, max_concurrency=1)
    await api_cli(cli, live)

    # 2. The workflow, created from the page's YAML as written.
    (tmp_path / "code-review.yaml").write_text(block("yaml"))
    created = await run(cli, "workflows", "create", str(tmp_path / "code-review.yaml"))
    assert created.exit_code == 0, created.output
    assert "workflow code-review version 1" in created.output

    # 3. The page's workers.
    monkeypatch.setenv("YMERA_URL", live.base_url)
    for kind, key in keys.items():
        monkeypatch.setenv(f"{kind}_KEY", key)
    namespace: dict[str, Any] = {"__name__": "code_review_workers"}
    exec(compile(block("python"), str(DOC), "exec"), namespace)
    workers = [namespace[n] for n in ("developer", "tester", "reviewer")]
    assert all(isinstance(w, Worker) for w in workers)

    # 4. The two runs, with the trees and outputs the page shows.
    pages = runs()
    assert len(pages) == 2
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker))
        for args, lines in pages:
            result = await run(cli, *args, "--timeout", "60")
            assert result.exit_code == 0, result.output
            got = [s for line in result.output.splitlines() if (s := shown(line)) is not None]
            text = " ".join(got)  # a long output line wraps at the terminal's width
            for line in lines:
                expected = shown(line)
                if expected:
                    assert expected in got or (
                        expected.startswith("output:") and expected in text
                    ), f"{expected!r} not in:\n" + "\n".join(got)
