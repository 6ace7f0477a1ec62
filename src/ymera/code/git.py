"""git in a subprocess, locked down: local repositories only, no hooks, no user config.

Every command runs with ``GIT_CONFIG_GLOBAL=/dev/null`` and
``GIT_CONFIG_NOSYSTEM=1`` (the server's own git configuration never applies),
``GIT_ALLOW_PROTOCOL=file`` (nothing reaches the network), no terminal prompt,
and ``-c`` options that turn off hooks, the fsmonitor, CRLF conversion and
commit signing. Paths go through pathspec files with ``--literal-pathspecs``,
never through a shell. These functions block: call them in a thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ymera.errors import Conflict, Forbidden, Unprocessable

_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.autocrlf=false",
    "core.quotepath=false",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "init.defaultBranch=main",
    "advice.detachedHead=false",
)
_ERROR_TAIL = 2000


class GitFailed(Unprocessable):
    """A git command failed; ``stderr`` holds the end of its message."""

    code = "git_failed"


class GitImportDisabled(Forbidden):
    code = "git_import_disabled"


class GitSourceNotAllowed(Forbidden):
    code = "git_source_not_allowed"


class GitSourceInvalid(Unprocessable):
    code = "git_source_invalid"


class NothingToCommit(Conflict):
    code = "nothing_to_commit"


@dataclass(frozen=True)
class StatusEntry:
    path: str
    index: str  # porcelain v1 X: " ", M, A, D, R, C, U, ?
    worktree: str  # porcelain v1 Y
    orig_path: str | None = None  # a rename's source


@dataclass(frozen=True)
class Status:
    branch: str | None
    head: str | None
    entries: list[StatusEntry]

    @property
    def clean(self) -> bool:
        return not self.entries


def git_binary() -> str:
    found = shutil.which("git")
    if found is None:
        raise GitFailed("git is not installed on the server")
    return found


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.devnull,
        "LC_ALL": "C",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "file",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_LITERAL_PATHSPECS": "1",
    }
    env.update(extra or {})
    return env


def run(
    cwd: Path,
    *args: str,
    timeout: float,
    stdin: bytes | None = None,
    config: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args`` in ``cwd``; :class:`GitFailed` on an exit status not in ``ok``."""
    argv = [git_binary()]
    for item in (*_SAFE_CONFIG, *config):
        argv += ["-c", item]
    argv += list(args)
    try:
        proc = subprocess.run(  # noqa: S603  (argv list, no shell; see the module doc)
            argv,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=_env(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitFailed(f"git {args[0]} took longer than {timeout:g} s") from exc
    if proc.returncode not in ok:
        stderr = proc.stderr.decode("utf-8", "replace").strip()[-_ERROR_TAIL:]
        raise GitFailed(
            f"git {args[0]} failed: {stderr.splitlines()[-1] if stderr else proc.returncode}",
            stderr=stderr,
            exit_status=proc.returncode,
        )
    return proc


def check_source(raw: str, allowed_roots: list[Path]) -> Path:
    """The real path of a repository to import, if it is a local directory under an
    allowed root. Never a URL."""
    if not allowed_roots:
        raise GitImportDisabled(
            "Importing git repositories is disabled on this server "
            "(set YMERA_CODE__GIT_ALLOWED_ROOTS to allow local repositories)"
        )
    if "\x00" in raw or "://" in raw or not os.path.isabs(raw):
        raise GitSourceInvalid(
            "git_path must be an absolute local path (URLs are never cloned)", git_path=raw
        )
    real = Path(raw).resolve()
    if not any(real.is_relative_to(root) for root in allowed_roots):
        raise GitSourceNotAllowed(
            "git_path is not under a directory this server allows importing from",
            git_path=raw,
        )
    if not real.is_dir():
        raise GitSourceInvalid("git_path is not a directory", git_path=raw)
    return real


def clone(source: Path, dest: Path, *, ref: str | None, timeout: float) -> None:
    """``git clone --no-hardlinks`` of a local repository into ``dest`` (must not exist)."""
    args = ["clone", "--no-hardlinks", "--quiet"]
    if ref:
        args.append(f"--branch={ref}")
    run(
        dest.parent,
        *args,
        "--",
        str(source),
        str(dest),
        timeout=timeout,
        # The source may belong to another user; the operator allowed its root.
        config=(f"safe.directory={source}",),
    )


def init(root: Path, *, timeout: float) -> None:
    run(root, "init", "--quiet", timeout=timeout)


def head(root: Path, *, timeout: float) -> str | None:
    proc = run(root, "rev-parse", "-q", "--verify", "HEAD^{commit}", timeout=timeout, ok=(0, 1))
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def _names(output: bytes) -> list[str]:
    return [name for name in output.decode("utf-8", "surrogateescape").split("\0") if name]


def status(root: Path, *, timeout: float) -> Status:
    proc = run(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", timeout=timeout)
    tokens = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    entries: list[StatusEntry] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if len(token) < 4:
            continue
        x, y, path = token[0], token[1], token[3:]
        orig = None
        if x in "RC":
            orig = tokens[i]
            i += 1
        entries.append(StatusEntry(path, x, y, orig))
    branch_proc = run(root, "symbolic-ref", "--short", "-q", "HEAD", timeout=timeout, ok=(0, 1))
    branch = branch_proc.stdout.decode().strip() or None
    return Status(branch, head(root, timeout=timeout), entries)


def diff(root: Path, scratch_index: Path, *, timeout: float) -> str:
    """Every change of the worktree against HEAD, untracked files included, as a
    patch ``git apply`` accepts. The real index is left alone: the changes are
    staged into a copy of it."""
    index = root / ".git" / "index"
    try:
        if index.is_file():
            shutil.copyfile(index, scratch_index)
        env = {"GIT_INDEX_FILE": str(scratch_index)}
        run(root, "add", "--all", timeout=timeout, env=env)
        proc = run(
            root,
            "diff",
            "--cached",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--binary",
            timeout=timeout,
            env=env,
        )
    finally:
        scratch_index.unlink(missing_ok=True)
    return proc.stdout.decode("utf-8", "surrogateescape")


def commit(
    root: Path,
    *,
    message: str,
    author_name: str,
    author_email: str,
    paths: list[str] | None,
    timeout: float,
) -> str:
    """Stage ``paths`` (every change when None) and commit them; the new HEAD sha.

    :class:`NothingToCommit` when they hold no change.
    """
    identity = (f"user.name={author_name}", f"user.email={author_email}")
    from_file: tuple[str, ...] = ()
    listed: bytes | None = None
    if paths is None:
        run(root, "add", "--all", timeout=timeout)
    else:
        tracked = set(_names(run(root, "ls-files", "-z", timeout=timeout).stdout))
        known = [p for p in paths if p in tracked or os.path.lexists(root / p)]
        if not known:
            raise NothingToCommit("The edits' files hold no change to commit")
        listed = "\0".join(known).encode("utf-8", "surrogateescape")
        from_file = ("--pathspec-from-file=-", "--pathspec-file-nul")
        run(root, "add", "--all", *from_file, timeout=timeout, stdin=listed)
    staged = set(_names(run(root, "diff", "--cached", "--name-only", "-z", timeout=timeout).stdout))
    if paths is not None:
        staged &= set(paths)
    if not staged:
        raise NothingToCommit("There is nothing to commit")
    message_file = root.parent / "COMMIT_MSG"
    message_file.write_text(message, encoding="utf-8")
    try:
        run(
            root,
            "commit",
            "--quiet",
            "--no-verify",
            "--allow-empty-message",
            f"--file={message_file}",
            *from_file,
            timeout=timeout,
            stdin=listed,
            config=identity,
        )
    finally:
        message_file.unlink(missing_ok=True)
    sha = head(root, timeout=timeout)
    if sha is None:
        raise GitFailed("git commit left no HEAD")
    return sha
