"""Bulk edits: YMERA's all-or-nothing apply of a 1,000-file change vs `git apply`.

One change (a line replaced in each of N files) is made as a unified diff by
git itself; then, on fresh copies of the same tree, timed in the same run:

- `git apply` of the diff (the baseline);
- YMERA's library (`ymera.code.diffs.apply_patch`): strict, every hunk of every
  file checked in memory first, then written through the crash-safe journal;
- YMERA's API on a real server: `POST /api/v1/workspaces/{id}/patches` with the
  same diff, and `POST .../bulk` with N `str_replace` operations — both record
  the edit (every file's base and result) in the database before answering.
  With `--analysis` the server also runs the per-edit analysis (ruff, radon,
  syntax) of the touched files, which is off in the default run.

    python -m bench editor [--files 1000] [--repeat 5] [--analysis]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from bench.dispatch import PASSWORD, Procs, server_env, start_server

GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "user.name=b", "-c", "user.email=b@b"]


def _make_tree(root: Path, files: int) -> None:
    for i in range(files):
        path = root / f"pkg{i // 100}" / f"mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"    value_{j} = {i} + {j}\n" for j in range(40))
        path.write_text(f'"""Module {i}."""\n\n\ndef compute_{i}():\n{body}    return 0\n')


def _change(root: Path, files: int) -> None:
    for i in range(files):
        path = root / f"pkg{i // 100}" / f"mod_{i}.py"
        text = path.read_text()
        path.write_text(text.replace(f"value_20 = {i} + 20", f"value_20 = {i} * 20", 1))


def _patch(base: Path, files: int) -> str:
    """The change as git writes it."""
    work = base.parent / "patch-work"
    shutil.copytree(base, work)
    subprocess.run([*GIT, "init", "-q"], cwd=work, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=work, check=True)
    _change(work, files)
    diff = subprocess.run([*GIT, "diff"], cwd=work, check=True, capture_output=True, text=True)
    shutil.rmtree(work)
    return diff.stdout


def _timed(fn: object, repeat: int, fresh: Path, base: Path) -> list[float]:
    times = []
    for _ in range(repeat):
        if fresh.exists():
            shutil.rmtree(fresh)
        shutil.copytree(base, fresh)
        os.sync()  # every run starts with nothing left to write back
        t0 = time.perf_counter()
        fn(fresh)  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return times


def _git_apply(patch_file: Path) -> object:
    def run(root: Path) -> None:
        subprocess.run(["git", "apply", str(patch_file)], cwd=root, check=True)

    return run


def _library_apply(patch: str) -> object:
    from ymera.code.diffs import apply_patch

    def run(root: Path) -> None:
        report = apply_patch(root, patch, journal_dir=root.parent / "journal")
        assert len(report.files) > 0

    return run


def _tar_of(base: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(base, arcname=".")
    return buf.getvalue()


async def _api(url: str, base: Path, patch: str, files: int, repeat: int) -> dict[str, list[float]]:
    archive = _tar_of(base)
    ops = [
        {
            "command": "str_replace",
            "path": f"pkg{i // 100}/mod_{i}.py",
            "old_str": f"value_20 = {i} + 20",
            "new_str": f"value_20 = {i} * 20",
        }
        for i in range(files)
    ]
    out: dict[str, list[float]] = {"patch": [], "bulk": []}
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        token = (
            await c.post("/api/v1/auth/token", data={"username": "bench", "password": PASSWORD})
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for run in range(repeat):
            for kind in ("patch", "bulk"):
                made = await c.post(
                    "/api/v1/workspaces/archive",
                    params={"name": f"bench-{kind}-{run}"},
                    content=archive,
                    headers={**headers, "Content-Type": "application/octet-stream"},
                )
                made.raise_for_status()
                ws = made.json()["workspace"]["id"]
                path = f"/api/v1/workspaces/{ws}/{'patches' if kind == 'patch' else 'bulk'}"
                body = {"patch": patch} if kind == "patch" else {"operations": ops}
                t0 = time.perf_counter()
                resp = await c.post(path, json=body, headers=headers)
                out[kind].append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    raise RuntimeError(f"{kind}: {resp.status_code} {resp.text[:300]}")
                changed = len(resp.json()["files"])
                if changed != files:
                    raise RuntimeError(f"{kind} changed {changed} files, not {files}")
    return out


def _server_run(
    base: Path, patch: str, files: int, repeat: int, analysis: bool
) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="ymera-bench-editor-"))
    procs = Procs(tmp)
    env = server_env(tmp, YMERA_CODE__ANALYZE_EDITS="true" if analysis else "false")
    try:
        url = start_server(procs, env, tmp, "server")
        return asyncio.run(_api(url, base, patch, files, repeat))
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench editor")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--analysis", action="store_true", help="per-edit analysis on")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-editor-"))
    try:
        base = tmp / "base"
        _make_tree(base, args.files)
        patch = _patch(base, args.files)
        patch_file = tmp / "change.diff"
        patch_file.write_text(patch)
        fresh = tmp / "fresh"
        rows = [
            ("git apply (baseline)", _timed(_git_apply(patch_file), args.repeat, fresh, base)),
            ("YMERA library apply_patch", _timed(_library_apply(patch), args.repeat, fresh, base)),
        ]
        api = _server_run(base, patch, args.files, args.repeat, args.analysis)
        suffix = ", analysis on" if args.analysis else ""
        rows.append((f"YMERA API patch{suffix}", api["patch"]))
        rows.append((f"YMERA API bulk str_replace{suffix}", api["bulk"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    baseline = statistics.median(rows[0][1])
    print(f"{args.files} files, {len(patch):,} bytes of diff, median of {args.repeat} runs")
    print(f"{'run':40} {'median ms':>10} {'min ms':>9} {'vs git apply':>13}")
    for name, times in rows:
        med = statistics.median(times)
        print(f"{name:40} {med * 1000:10.1f} {min(times) * 1000:9.1f} {med / baseline:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
