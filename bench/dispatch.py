"""Dispatch throughput and latency: YMERA vs Celery + Redis, side by side.

No-op tasks are submitted through the HTTP API (one per request, and in
batches), executed by real worker processes through the worker SDK, and
observed by the submitter on the SSE event stream. The same workload runs on
Celery + Redis (prefork workers, results in Redis), its single submits
alternated with YMERA's in short chunks (the machine's speed drifts by tens of
percent over the minutes the benchmark takes, and alternating puts the same
drift under both); batch rates are compared to the mean of Celery's single
runs. Batches run three times per database (each 2 x --tasks tasks); the
row is the median run and every run's rate is printed. Every YMERA task is
durable (committed to the database) before the submit request is answered.
It ends with the issue's bars (single submits >= 1.0x Celery, the aim 2.0x;
batches >= 5,000 tasks/s), each met or MISSED, and exits 1 if one is missed.

    python -m bench dispatch [--tasks 5000] [--workers 2] [--db sqlite,postgresql]
                             [--runs single,batch,light] [--no-celery]
                             [--set SETTING=VALUE ...]

Environment: ``BENCH_SUBMITTERS`` (single submits in flight, 32),
``BENCH_WORKER_SLOTS`` (tasks a worker process holds at once, 1,024),
``BENCH_BATCH_RUNS`` (batch runs per database, 3; the median is reported),
``BENCH_PROFILE`` / ``BENCH_PROFILE_RATE`` (a py-spy profile of the server),
``BENCH_KEEP_DB`` (keep the PostgreSQL database).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

PG_ADMIN = os.environ.get("YMERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench-password-123"
RUNS = ("single", "batch", "light")
# Tasks each worker process may hold at once. No-op tasks cost nothing to hold, so
# this is the depth of the pipeline (server -> worker -> server): throughput is at
# most slots / round-trip time, and on a busy machine the round trip is long.
WORKER_SLOTS = int(os.environ.get("BENCH_WORKER_SLOTS", "1024"))
# Concurrent single submits (each waits for its answer before the next).
SUBMITTERS = int(os.environ.get("BENCH_SUBMITTERS", "32"))
# Single submits alternate with Celery's in this many chunks of each (even: ABBA).
ROUNDS = 6
# Batch runs per database (odd): the row shows the median one, and every run's
# rate is printed. A batch run lasts ~2 s, short enough for one hiccup of a
# shared machine to move it by a third.
BATCH_RUNS = int(os.environ.get("BENCH_BATCH_RUNS", "3"))


COUNTED = (
    *("server_cpu", "worker_cpu", "client_cpu", "db_cpu"),
    *("writes", "commits", "messages", "frames"),
)


@dataclass
class Result:
    name: str
    tasks: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = float("nan")  # seconds of CPU the server used for the run
    worker_cpu: float = float("nan")  # seconds of CPU all worker processes used
    client_cpu: float = float("nan")  # seconds of CPU this (submitting) process used
    db_cpu: float = float("nan")  # seconds of CPU the local PostgreSQL's processes used
    writes: float = float("nan")  # the group-commit writer's writes and commits
    commits: float = float("nan")
    messages: float = float("nan")  # WebSocket messages and frames sent to workers
    frames: float = float("nan")
    baseline: float | None = None  # the Celery rate measured beside this run
    pairs: list[float] = field(default_factory=list)  # its rounds' ratios to Celery's
    runs: list[float] = field(default_factory=list)  # every run's rate, when the median's

    @property
    def writes_per_commit(self) -> float:
        return self.writes / max(1.0, self.commits)

    @property
    def frames_per_message(self) -> float:
        return self.frames / max(1.0, self.messages)

    @property
    def worker_ms_per_task(self) -> float:
        return 1000 * self.worker_cpu / self.tasks if self.tasks else float("nan")

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.server_cpu / self.tasks if self.tasks else float("nan")

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of every local PostgreSQL process (backends, and through the
    postmaster's reaped-children times, those that exited): the database's share
    of the machine when it runs here. Other databases' work on the same server
    counts too."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


# --- YMERA -----------------------------------------------------------------------------


async def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


class Watcher:
    """Reads task.succeeded events from SSE and records when each arrived."""

    def __init__(self, client: aiohttp.ClientSession, headers: dict[str, str], after: int) -> None:
        self.client = client
        self.headers = headers
        self.after = after
        self.done: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.live = asyncio.Event()

    async def run(self) -> None:
        params = {"type": "task.succeeded", "after": str(self.after)}
        headers = {**self.headers, "Accept": "text/event-stream"}
        async with self.client.get("/api/v1/events", params=params, headers=headers) as resp:
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(": live") or line.startswith("retry:"):
                    self.live.set()
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    self.done[data["resource_id"]] = time.perf_counter()
                    self.changed.set()

    async def wait_for(self, ids: list[str], timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while not all(i in self.done for i in ids):
            self.changed.clear()
            if time.monotonic() > deadline:
                missing = sum(1 for i in ids if i not in self.done)
                raise RuntimeError(f"{missing} tasks did not finish")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 1)
        return max(self.done[i] for i in ids)


async def _ymera_run(
    url: str,
    n: int,
    workers: int,
    procs: Procs,
    env: dict[str, str],
    cwd: Path,
    label: str,
    runs: tuple[str, ...] = RUNS,
    celery: Celery | None = None,
) -> list[Result]:
    server_pid = procs.procs[-1].pid

    def workers_cpu() -> float:
        return sum(cpu_seconds(p.pid) for p in procs.procs if p.pid != server_pid)

    async def counters() -> dict[str, float]:
        text = (await c.get("/metrics", headers=headers)).text
        wanted = {
            "ymera_task_writer_commits_total",
            "ymera_task_writer_writes_total",
            "ymera_worker_messages_sent_total",
            "ymera_worker_frames_sent_total",
        }
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name in wanted
        }

    async def measured(run: Any) -> Result:
        before, before_workers = cpu_seconds(server_pid), workers_cpu()
        db_before = postgres_cpu_seconds() if "postgresql" in label else float("nan")
        client_before = time.process_time()
        start = await counters()
        result: Result = await run
        result.server_cpu = cpu_seconds(server_pid) - before
        result.worker_cpu = workers_cpu() - before_workers
        result.client_cpu = time.process_time() - client_before
        result.db_cpu = postgres_cpu_seconds() - db_before
        end = await counters()
        delta = {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}
        result.writes = delta.get("ymera_task_writer_writes_total", 0.0)
        result.commits = delta.get("ymera_task_writer_commits_total", 0.0)
        result.frames = delta.get("ymera_worker_frames_sent_total", 0.0)
        result.messages = delta.get("ymera_worker_messages_sent_total", 0.0)
        return result

    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        tok = (
            await c.post("/api/v1/auth/token", data={"username": "bench", "password": PASSWORD})
        ).json()
        headers = {"Authorization": f"Bearer {tok['access_token']}"}
        agent = (
            await c.post(
                "/api/v1/agents",
                json={"name": "noop", "max_concurrency": WORKER_SLOTS},
                headers=headers,
            )
        ).json()
        key = (
            await c.post(
                "/api/v1/api-keys", json={"name": "noop", "agent_id": agent["id"]}, headers=headers
            )
        ).json()["key"]
        # One agent, several worker processes: each connection is its own agent in the
        # protocol, so register one agent per process.
        keys = [key]
        for i in range(1, workers):
            extra = (
                await c.post(
                    "/api/v1/agents",
                    json={"name": f"noop-{i}", "max_concurrency": WORKER_SLOTS},
                    headers=headers,
                )
            ).json()
            keys.append(
                (
                    await c.post(
                        "/api/v1/api-keys",
                        json={"name": f"noop-{i}", "agent_id": extra["id"]},
                        headers=headers,
                    )
                ).json()["key"]
            )
        for i, k in enumerate(keys):
            procs.start(
                f"{label}-worker-{i}",
                [sys.executable, "-m", "bench.noop_worker", str(WORKER_SLOTS)],
                {**env, "YMERA_URL": url, "YMERA_API_KEY": k},
                cwd,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            agents = (
                await c.get("/api/v1/agents", params={"status": "IDLE"}, headers=headers)
            ).json()
            if len(agents["items"]) == workers:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("workers did not connect")
        seq = (await c.get("/api/v1/events", params={"limit": 1000}, headers=headers)).json()
        after = max([e["seq"] for e in seq["items"]] or [0])
        # The measured client is aiohttp: httpx costs ~1 ms of client CPU per request
        # (0.2 ms with aiohttp), which on a 2-core machine starves the server.
        timeout = aiohttp.ClientTimeout(total=None)
        async with (
            aiohttp.ClientSession(url, timeout=timeout) as sse,
            aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=64)) as s,
        ):
            watcher = Watcher(sse, headers, after)
            reader = asyncio.create_task(watcher.run())
            await asyncio.wait_for(watcher.live.wait(), 10)
            results = []
            try:
                if "single" in runs and celery is None:
                    results.append(
                        await measured(_single(s, headers, watcher, n, f"YMERA {label} single"))
                    )
                elif "single" in runs and celery is not None:

                    async def chunk(count: int) -> Result:
                        return await measured(_single(s, headers, watcher, count, ""))

                    results += await _beside_celery(chunk, celery, n, label)
                if "batch" in runs:
                    parts = [
                        await measured(_batch(s, headers, watcher, n * 2, f"YMERA {label} batch"))
                        for _ in range(max(1, BATCH_RUNS))
                    ]
                    results.append(median_run(parts))
                if "light" in runs:
                    results.append(
                        await measured(_light(s, headers, watcher, 50, f"YMERA {label} light"))
                    )
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
    return results


async def _beside_celery(
    ours: Callable[[int], Awaitable[Result]], celery: Celery, n: int, label: str
) -> list[Result]:
    """YMERA's single submits and Celery's in alternating chunks of ``n /
    ROUNDS`` tasks each (in ABBA order: YMERA first in even rounds, Celery in
    odd ones), each system idle while the other runs: the machine's speed
    drifts by tens of percent over minutes, and alternating short runs puts
    the same drift under both."""
    size = max(1, n // ROUNDS)
    mine: list[Result] = []
    theirs: list[Result] = []
    for i in range(ROUNDS):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            if side == 0:
                mine.append(await ours(size))
            else:
                theirs.append(await celery.run(celery.single, size, ""))
    result = merged(f"YMERA {label} single", mine)
    base = merged(f"Celery single (beside {label})", theirs)
    result.baseline = base.rate
    result.pairs = [a.rate / b.rate for a, b in zip(mine, theirs, strict=True)]
    return [result, base]


def median_run(parts: list[Result]) -> Result:
    """The run of median rate among runs of the same workload, with every
    run's rate (in the order they ran) in ``runs``."""
    median = sorted(parts, key=lambda p: p.rate)[len(parts) // 2]
    median.runs = [p.rate for p in parts]
    return median


def merged(name: str, parts: list[Result]) -> Result:
    """One result of several runs of the same workload, their times added."""
    out = Result(
        name,
        sum(p.tasks for p in parts),
        sum(p.seconds for p in parts),
        [x for p in parts for x in p.latencies],
    )
    for attr in COUNTED:
        setattr(out, attr, sum(getattr(p, attr) for p in parts))
    return out


async def _post(s: aiohttp.ClientSession, path: str, body: Any, headers: dict[str, str]) -> Any:
    async with s.post(path, json=body, headers=headers) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"{path}: {resp.status} {await resp.text()}")
        return await resp.json()


async def _single(
    s: aiohttp.ClientSession, headers: dict[str, str], w: Watcher, n: int, name: str
) -> Result:
    started: dict[str, float] = {}
    queue = list(range(n))

    async def submitter() -> None:
        while queue:
            queue.pop()
            t0 = time.perf_counter()
            task = await _post(s, "/api/v1/tasks", {"type": "noop"}, headers)
            started[task["id"]] = t0

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    end = await w.wait_for(list(started))
    return Result(name, n, end - t0, [w.done[i] - s for i, s in started.items()])


async def _batch(
    s: aiohttp.ClientSession, headers: dict[str, str], w: Watcher, n: int, name: str
) -> Result:
    started: dict[str, float] = {}
    size = 500

    async def one(count: int) -> None:
        t0 = time.perf_counter()
        body = {"tasks": [{"type": "noop"}] * count}
        minimal = {**headers, "Prefer": "return=minimal"}  # ids only: 500 tasks a request
        for item in await _post(s, "/api/v1/tasks/batch", body, minimal):
            started[item["id"]] = t0

    t0 = time.perf_counter()
    await asyncio.gather(*(one(min(size, n - i)) for i in range(0, n, size)))
    end = await w.wait_for(list(started))
    return Result(name, n, end - t0, [w.done[i] - s for i, s in started.items()])


async def _light(
    s: aiohttp.ClientSession, headers: dict[str, str], w: Watcher, n: int, name: str
) -> Result:
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        begun = time.perf_counter()
        tid = (await _post(s, "/api/v1/tasks", {"type": "noop"}, headers))["id"]
        await w.wait_for([tid])
        lat.append(w.done[tid] - begun)
    return Result(name, n, time.perf_counter() - t0, lat)


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's server: its own data dir under ``tmp``, no
    rate limit, no bootstrap admin, quiet logs; ``extra`` settings on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YMERA_")}
    env.update(
        {
            "YMERA_DATA_DIR": str(tmp / "data"),
            "YMERA_RATE_LIMIT__ENABLED": "false",
            "YMERA_AUTH__BOOTSTRAP_ADMIN": "false",
            "YMERA_LOG__LEVEL": "WARNING",
            # This checkout's source first, so a second worktree (a baseline) runs its own.
            "PYTHONPATH": os.pathsep.join(
                str(Path(__file__).resolve().parent.parent / part) for part in ("src", "")
            ),
            **extra,
        }
    )
    return env


def start_server(procs: Procs, env: dict[str, str], tmp: Path, name: str) -> str:
    """Migrate, create the `bench` admin (password ``PASSWORD``), start `ymera
    serve` on a free port and wait until it is ready; returns its URL."""
    ymera = [sys.executable, "-m", "ymera"]
    subprocess.run([*ymera, "db", "upgrade"], env=env, cwd=tmp, check=True, capture_output=True)
    subprocess.run(
        [*ymera, "users", "create", "bench", "--admin", "--password", PASSWORD],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
    )
    port = free_port()
    procs.start(name, [*ymera, "serve", "--port", str(port)], env, tmp)
    url = f"http://127.0.0.1:{port}"
    asyncio.run(_wait_ready(url))
    return url


def _ymera(
    db: str,
    n: int,
    workers: int,
    runs: tuple[str, ...] = RUNS,
    settings: dict[str, str] | None = None,
    celery: Celery | None = None,
) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="ymera-bench-"))
    procs = Procs(tmp)
    env = server_env(tmp, **(settings or {}))
    pg_name = None
    if db == "postgresql":
        pg_name = f"ymera_bench_{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{pg_name}"'],
            check=True,
        )
        env["YMERA_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    try:
        url = start_server(procs, env, tmp, f"{db}-server")
        if os.environ.get("BENCH_PROFILE"):
            # Sample the server for 15 s from the start of the runs (needs py-spy).
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    *("record", "--nonblocking", "--duration", "15", "-f", "raw"),
                    *("--rate", os.environ.get("BENCH_PROFILE_RATE", "100")),
                    *("-o", os.environ["BENCH_PROFILE"], "-p", str(procs.procs[-1].pid)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return asyncio.run(_ymera_run(url, n, workers, procs, env, tmp, db, runs, celery))
    finally:
        procs.stop()
        if pg_name and not os.environ.get("BENCH_KEEP_DB"):
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                check=False,
            )
        shutil.rmtree(tmp, ignore_errors=True)


# --- Celery ----------------------------------------------------------------------------


class Celery:
    """Celery + Redis with the same no-op workload: prefork workers started once
    and kept for the whole benchmark, so that its runs can alternate with
    YMERA's. Its client calls run on one thread of their own."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.tmp = Path(tempfile.mkdtemp(prefix="celery-bench-"))
        self.procs = Procs(self.tmp)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="celery")

    @staticmethod
    def available() -> bool:
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401
        except ImportError:
            return False
        return True

    def __enter__(self) -> Celery:
        import redis as redis_lib

        from bench.celery_app import BROKER, app, noop

        redis_lib.Redis.from_url(BROKER).flushdb()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.procs.start(
            "celery",
            [
                *(sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"),
                *("--concurrency", str(self.workers), "--loglevel", "WARNING"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env,
            self.tmp,
        )
        deadline = time.monotonic() + 30
        while not app.control.ping(timeout=1) and time.monotonic() < deadline:
            pass
        self.pool.submit(lambda: noop.delay().get(timeout=30)).result()  # warm up
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()
        self.procs.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def single(self, count: int, name: str) -> Result:
        """``count`` tasks sent one by one without waiting, then every result awaited."""
        from bench.celery_app import noop

        t0 = time.perf_counter()
        sent = [(time.perf_counter(), noop.delay()) for _ in range(count)]
        lat = []
        for s, r in sent:
            r.get(timeout=120)
            lat.append(time.perf_counter() - s)
        return Result(name, count, time.perf_counter() - t0, lat)

    def light(self, count: int, name: str) -> Result:
        """One task at a time, each awaited before the next (latency at light load)."""
        from bench.celery_app import noop

        lat = []
        t0 = time.perf_counter()
        for _ in range(count):
            s = time.perf_counter()
            noop.delay().get(timeout=30)
            lat.append(time.perf_counter() - s)
        return Result(name, count, time.perf_counter() - t0, lat)

    async def run(self, fn: Callable[[int, str], Result], count: int, name: str) -> Result:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, count, name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dispatch")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="which YMERA runs: single,batch,light"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a server setting for the YMERA runs, e.g. tasks.writer_lanes=1 (repeatable)",
    )
    args = parser.parse_args(argv)
    runs = tuple(r for r in args.runs.split(",") if r)
    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        settings["YMERA_" + name.replace(".", "__").upper()] = value
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        celery = None
        if not args.no_celery:
            if Celery.available():
                celery = stack.enter_context(Celery(args.workers))
            else:
                print("  (celery not installed: pip install -e '.[bench]'; skipped)")
        for db in args.db.split(","):
            results += _ymera(db, args.tasks, args.workers, runs, settings, celery)
        if celery is not None:
            if not any(r.baseline for r in results):  # no single submits to pair with
                results.append(celery.single(args.tasks, "Celery single"))
            results.append(celery.light(50, "Celery light"))
    # Single submits: to the Celery runs alternated with them; batches: to the
    # mean of every Celery single run.
    singles = [r.rate for r in results if r.name.startswith("Celery single")]
    base = sum(singles) / len(singles) if singles else None
    print(
        f"{'run':34} {'tasks':>6} {'tasks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs Celery':>9}"
        f" {'srv CPU ms/task':>15} {'db CPU ms/task':>14} {'wrk CPU ms/task':>15}"
        f" {'writes/commit':>13}"
        f" {'frames/msg':>10} {'client CPU ms/task':>18}"
    )
    for r in results:
        against = r.baseline or (base if r.name.startswith("YMERA") else None)
        ratio = f"{r.rate / against:9.2f}" if against and "light" not in r.name else f"{'':9}"
        cpu = f"{r.cpu_ms_per_task:15.3f}" if r.server_cpu == r.server_cpu else f"{'':15}"
        db_ms = 1000 * r.db_cpu / r.tasks if r.tasks else float("nan")
        cpu += f" {db_ms:14.3f}" if db_ms == db_ms else f" {'':14}"
        wcpu = f"{r.worker_ms_per_task:15.2f}" if r.worker_cpu == r.worker_cpu else f"{'':15}"
        batching = (
            f" {r.writes_per_commit:13.1f} {r.frames_per_message:10.1f}"
            f" {1000 * r.client_cpu / r.tasks:18.2f}"
            if r.writes == r.writes
            else ""
        )
        print(
            f"{r.name:34} {r.tasks:6d} {r.rate:9.0f} {r.pct(50):8.1f} {r.pct(99):8.1f} {ratio}"
            f" {cpu} {wcpu}{batching}"
        )
    for r in results:
        if len(r.runs) > 1:
            print(
                f"{r.name}: {len(r.runs)} runs of {r.tasks:,} tasks, tasks/s per run"
                f" {' '.join(f'{x:,.0f}' for x in r.runs)} (the row: the median)"
            )
        if r.pairs:
            pairs = sorted(r.pairs)
            print(
                f"{r.name}: {len(pairs)} rounds alternated with Celery's, ratio per round"
                f" {' '.join(f'{x:.2f}' for x in r.pairs)} (median {pairs[len(pairs) // 2]:.2f})"
            )
    return report_bars(results)


# The bars (docs/benchmarks.md): single submits at least Celery's rate
# (the aim: twice it), batch submits at least 5,000 tasks/s.
BATCH_BAR = 5000.0


def report_bars(results: list[Result]) -> int:
    """Print each bar as met or missed (and the aim); 1 if any is missed."""
    print()
    missed = False
    for r in results:
        if not r.name.startswith("YMERA"):
            continue
        if r.name.endswith("single") and r.baseline:
            ratio = r.rate / r.baseline
            missed |= ratio < 1.0
            aim = "reached" if ratio >= 2.0 else "not reached"
            print(
                f"  [{'met' if ratio >= 1.0 else 'MISSED'}] {r.name} >= 1.0x Celery"
                f" ({ratio:.2f}x; the 2.0x aim {aim})"
            )
        elif r.name.endswith("batch"):
            missed |= r.rate < BATCH_BAR
            print(
                f"  [{'met' if r.rate >= BATCH_BAR else 'MISSED'}] {r.name}"
                f" >= {BATCH_BAR:,.0f} tasks/s ({r.rate:,.0f})"
            )
    return 1 if missed else 0
