"""Analysis over HTTP: a workspace's report, and each edit's analysis reporting only the
problems it introduced (and the ones it fixed)."""

from __future__ import annotations

from tests.code.api_helpers import (
    another_app,
    cheap_passwords,  # noqa: F401  (autouse fixture)
    create_workspace,
    get,
    ok_editor,
    post,
    root_of,
)
from tests.conftest import AppHarness
from ymera.auth.permissions import Role

CODE = b"import os\n\n\ndef total(items):\n    return sum(items)\n"


async def test_workspace_analysis_reports_syntax_lint_and_metrics(harness: AppHarness) -> None:
    ws = await create_workspace(harness)
    root = root_of(harness, ws["id"])
    (root / "ok.py").write_bytes(CODE)
    (root / "broken.py").write_bytes(b"def f(:\n    pass\n")
    (root / "data.json").write_bytes(b'{"a": 1,}')
    (root / "notes.txt").write_bytes(b"text\n")
    report = (await get(harness, f"{ws['id']}/analysis")).json()
    codes = {(f["path"], f["code"]) for f in report["findings"]}
    assert ("ok.py", "F401") in codes
    assert any(
        path == "broken.py" and f["severity"] == "error"
        for f in report["findings"]
        for path in [f["path"]]
    )
    assert any(path == "data.json" for path, _ in codes)
    assert report["counts"]["error"] >= 2
    assert report["metrics"]["ok.py"]["language"] == "python"
    assert "notes.txt" not in report["metrics"]

    only = (await get(harness, f"{ws['id']}/analysis", path=["ok.py", "../x.py"])).json()
    assert {f["path"] for f in only["findings"]} == {"ok.py"}
    assert only["skipped"] == {"../x.py": "outside"}


async def test_an_edit_reports_only_the_problems_it_introduced(harness: AppHarness) -> None:
    ws = await create_workspace(harness)
    root = root_of(harness, ws["id"])
    (root / "calc.py").write_bytes(CODE)

    # The unused import was there before: not reported; the undefined name is new.
    out = await ok_editor(
        harness,
        ws["id"],
        command="str_replace",
        path="calc.py",
        old_str="return sum(items)",
        new_str="return sum(items) + offset",
    )
    analysis = out["edit"]["analysis"]
    assert analysis["ran"] is True
    assert [(f["code"], f["line"]) for f in analysis["introduced"]] == [("F821", 5)]
    assert analysis["introduced"][0]["path"] == "calc.py"
    assert analysis["fixed"] == []
    # It is kept with the edit.
    stored = (await get(harness, f"{ws['id']}/edits/{out['edit']['id']}")).json()
    assert stored["analysis"] == analysis

    # Shifting lines does not make old problems new; removing one shows as fixed.
    fix = await ok_editor(
        harness,
        ws["id"],
        command="str_replace",
        path="calc.py",
        old_str="import os\n",
        new_str="offset = 0\n\n",
    )
    assert fix["edit"]["analysis"]["introduced"] == []
    assert {f["code"] for f in fix["edit"]["analysis"]["fixed"]} == {"F401", "F821"}

    # A proposal is analysed too (reviewers see what it would introduce).
    proposal = await ok_editor(
        harness,
        ws["id"],
        command="insert",
        path="calc.py",
        insert_line=0,
        insert_text="def broken(:",
        propose=True,
    )
    introduced = proposal["edit"]["analysis"]["introduced"]
    assert [f["severity"] for f in introduced] == ["error"]
    assert (root / "calc.py").read_bytes().startswith(b"offset = 0")

    # Files no analyser knows leave a note, not a report.
    text = await ok_editor(harness, ws["id"], command="create", path="n.txt", file_text="x")
    assert text["edit"]["analysis"] == {
        "ran": False,
        "note": "no analysable file",
        "introduced": [],
        "fixed": [],
        "skipped": {},
        "tool_errors": [],
    }
    bulk = await post(
        harness,
        f"{ws['id']}/bulk",
        operations=[
            {"command": "create", "path": "a.py", "file_text": "import sys\n"},
            {"command": "create", "path": "b.py", "file_text": "x = (\n"},
        ],
    )
    found = {(f["path"], f["severity"]) for f in bulk.json()["edit"]["analysis"]["introduced"]}
    assert found == {("a.py", "warning"), ("b.py", "error")}


async def test_edits_past_the_analysis_limit_are_not_analysed(harness: AppHarness) -> None:
    ws = await create_workspace(harness)
    async with another_app(harness, analysis_max_files=1) as client:
        bulk = await client.post(
            f"/api/v1/workspaces/{ws['id']}/bulk",
            json={
                "operations": [
                    {"command": "create", "path": "a.py", "file_text": "import sys\n"},
                    {"command": "create", "path": "b.py", "file_text": "import os\n"},
                ]
            },
            headers=await harness.headers(Role.DEVELOPER),
        )
    analysis = bulk.json()["edit"]["analysis"]
    assert analysis["ran"] is False
    assert analysis["note"] == "more than 1 files"
