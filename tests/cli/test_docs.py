"""The README and docs/cli.md describe what exists: every endpoint and command, and
nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from ymera.app import create_app
from ymera.cli.main import app as cli_app
from ymera.config import Settings

REPO = Path(__file__).resolve().parents[2]
_ENDPOINT_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/\S*)` \|", re.MULTILINE)


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_api_overview_lists_exactly_the_served_endpoints() -> None:
    schema = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    served = {
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method in operations
    }
    overview = _section((REPO / "README.md").read_text(), "API overview")
    documented = {f"{m} {p}" for m, p in _ENDPOINT_ROW.findall(overview)}
    assert not served - documented, f"add to README's API overview: {sorted(served - documented)}"
    assert not documented - served, f"README documents missing endpoints: {documented - served}"


def _commands() -> list[str]:
    def walk(group: object, prefix: str) -> list[str]:
        subs = getattr(group, "commands", None)
        if not subs:
            return [prefix]
        return [c for name, sub in subs.items() for c in walk(sub, f"{prefix} {name}")]

    return walk(typer.main.get_command(cli_app), "ymera")


def test_cli_docs_describe_every_command() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    missing = [c for c in _commands() if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
    assert not missing, f"add to docs/cli.md: {missing}"


def test_readme_cli_overview_names_every_command_group() -> None:
    overview = _section((REPO / "README.md").read_text(), "CLI overview")
    groups = {c.split()[1] for c in _commands()}
    missing = [g for g in sorted(groups) if f"`ymera {g}" not in overview]
    assert not missing, f"add to README's CLI overview: {missing}"


def test_relative_links_in_docs_resolve() -> None:
    docs = ("README.md", "docs/architecture.md", "docs/configuration.md", "docs/cli.md")
    for doc in (REPO / name for name in docs):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
