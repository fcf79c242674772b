"""What every benchmark shares: the machine description, a scratch PostgreSQL database,
child processes, percentiles and the report appended to ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
#: The PostgreSQL server the benchmarks use; each script makes and drops its own database.
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # benchmarks/settings.py turns DEBUG off itself, after importing the example settings:
    # they refuse DJANGO_DEBUG=0 while they hold the published demo webhook secret, which
    # is the one the load generator signs with.
    env.pop("DJANGO_DEBUG", None)
    env.update(
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
        DATABASE_URL=database_url,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), str(ROOT / "example")]),
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def setup_django(database_url: str, **extra: str) -> None:
    """Point this process at ``database_url`` with the bench settings, then set Django up."""
    os.environ.update(env_for(database_url, **extra))
    for path in (str(ROOT / "example"), str(ROOT), str(ROOT / "src")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def migrate_and_setup(database_url: str, **extra: str) -> None:
    """Migrate the database at ``database_url`` (in a subprocess, as a deployment would),
    then set Django up in this process against it."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=env_for(database_url, **extra),
        check=True,
    )
    setup_django(database_url, **extra)


def scratch_database(name: str) -> str:
    """Drop and create database ``name`` on the bench server; return its URL."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: Sequence[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        list(args), cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def produce(send: Callable[[range], None], events: int, producers: int) -> None:
    """Call ``send`` on ``producers`` forked processes at once, each with its share of
    ``range(events)``, as that many concurrent senders would; return when all are done.

    Each process opens its own connections: the caller closes its database connections
    first, and ``send`` opens whatever else it needs inside the child.
    """
    import multiprocessing

    context = multiprocessing.get_context("fork")
    shares = [range(n, events, producers) for n in range(producers)]
    processes = [context.Process(target=send, args=(share,)) for share in shares]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} producer processes failed (exit codes {failed})")


def callgrind_instructions(child: Sequence[str], *, observability: str = "") -> int:
    """The instructions ``python -m <child...>`` executes under callgrind, whole process.

    The same hash seed every run, and one OpenBLAS/OpenMP thread: numpy is imported by the
    app, and OpenBLAS's idle worker threads spin, so their instructions would grow with the
    run's wall time, which the machine's load sets. ``observability`` is the child's
    ``BENCH_OBSERVABILITY`` (``on`` gets a metrics directory of its own).
    """
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", *child]
        env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
        env["OMP_NUM_THREADS"] = "1"
        if observability:
            env["BENCH_OBSERVABILITY"] = observability
        if observability == "on":
            metrics_dir = Path(tmp) / "metrics"
            metrics_dir.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        if run.returncode != 0 or found is None:
            raise RuntimeError(run.stderr[-3000:])
        return int(found.group(1))


def print_profile(profiler) -> None:
    """Print a pyinstrument profile; ``PROFILE_ALL=1`` shows every frame, Django's and
    psycopg's too, instead of folding library frames."""
    show_all = bool(os.environ.get("PROFILE_ALL"))
    print(profiler.output_text(unicode=False, color=False, show_all=show_all))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, alive now (Linux)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(child) for child in children]
    return found


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:  # gone meanwhile (a backend whose connection closed)
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's finished (waited for) children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backend_pid() -> int:
    """The pid of the default connection's PostgreSQL backend, whose CPU is
    ``process_cpu(backend_pid())``; an error if that server does not run on this machine
    (``process_cpu`` would read 0 for a pid it cannot see)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = int(cursor.fetchone()[0])
    if not Path(f"/proc/{pid}/stat").exists():
        raise RuntimeError(
            f"PostgreSQL backend {pid} is not a process of this machine: its CPU cannot be "
            "read (run the server here)"
        )
    return pid


def database_backends() -> list[int]:
    """The pids of the client backends connected to the default connection's database,
    but its own; an error, as :func:`backend_pid` gives, if that server does not run on
    this machine (their CPU would read as 0)."""
    from django.db import connection

    own = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> %s",
            [own],
        )
        return [pid for (pid,) in cursor.fetchall()]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return ordered[rank]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:
        return f"unreachable ({exc.__class__.__name__})"


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs ({_cpu_model()}), {_memory()} RAM, "
        f"Python {platform.python_version()}, PostgreSQL {_postgres_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str, notes: str = "", *, write: bool = True) -> None:
    """Print the result and append it, with the machine and the command, to the docs;
    with ``write=False`` or ``BENCH_NO_WRITE=1`` (a trial run) only print it."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name if spec else sys.argv[0]
    command = shlex.join(["PYTHONPATH=src:.:example", "python", "-m", module, *sys.argv[1:]])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n### {title} — {when}\n\n"
        f"Machine: {machine()}\n\n"
        f"Command: `{command}`\n\n{body}\n" + (f"\n{notes}\n" if notes else "")
    )
    print(section)
    if not write or os.environ.get("BENCH_NO_WRITE") == "1":
        shown = REPORT.relative_to(ROOT) if REPORT.is_relative_to(ROOT) else REPORT
        print(f"(a trial run: not appended to {shown})")
        return
    REPORT.parent.mkdir(exist_ok=True)
    if not REPORT.exists():
        REPORT.write_text("# Benchmarks\n\nWritten by `make bench`; newest runs at the end.\n")
    with REPORT.open("a") as fh:
        fh.write(section)


def create_noop_workflow(name: str, event_type: str, *, idempotent: bool = True) -> None:
    """The benchmarks' workflow: a GitHub ``event_type`` triggers two ``bench_noop`` steps
    (idempotent or not), so a run costs the engine's own writes and nothing else."""
    from automate.services import WorkflowService

    steps = [
        {"name": step, "type": "bench_noop", "config": {"idempotent": idempotent}}
        for step in ("First", "Second")
    ]
    WorkflowService().create_workflow(
        name=name, trigger={"connector": "github", "events": [event_type]}, steps=steps
    )


def parked_workflows() -> dict:
    """The parked-run benchmarks' workflows, by path: ``plain`` (two no-op steps on
    ``pull_request``), ``delay`` (``[delay of an hour, no-op]`` on ``parked.delay``) and
    ``event`` (``[wait_for_event, no-op]`` on ``parked.wait``, each run waiting for a
    ``parked.reply`` whose ``key`` is its own)."""
    from automate.services import WorkflowService

    service = WorkflowService()
    noop = {"name": "Then", "type": "bench_noop", "config": {}}

    def make(name: str, event: str, steps: list[dict]):
        return service.create_workflow(
            name=name, trigger={"connector": "github", "events": [event]}, steps=steps
        )

    return {
        "plain": make(
            "Bench no-ops",
            "pull_request",
            [{"name": "First", "type": "bench_noop", "config": {}}, noop],
        ),
        "delay": make(
            "Bench delay",
            "parked.delay",
            [{"name": "Wait", "type": "delay", "config": {"seconds": 3600}}, noop],
        ),
        "event": make(
            "Bench wait_for_event",
            "parked.wait",
            [
                {
                    "name": "Wait",
                    "type": "wait_for_event",
                    "config": {
                        "connector": "github",
                        "event": "parked.reply",
                        "match": {"key": "{{ event.payload.key }}"},
                    },
                },
                noop,
            ],
        ),
    }


def enqueue_noop_events(prefix: str, event_type: str, numbers: Iterable[int]) -> None:
    """Enqueue a GitHub ``event_type`` event (external id ``<prefix>-<n>``) for each ``n``
    of ``numbers``, one ``queue.enqueue`` each, as a webhook would; then close this
    process's database connection.

    Fits :func:`produce` as it is, through ``functools.partial(enqueue_noop_events, prefix,
    event_type)``: a forked producer must not leave its connection open. Enqueuing the same
    ``prefix`` and numbers again sends repeats, which the outbox deduplicates.
    """
    import uuid

    from django.db import connection

    from automate_core.outbox import queue

    for n in numbers:
        queue.enqueue(
            "github",
            event_type=event_type,
            payload={"action": "opened", "number": n},
            external_id=f"{prefix}-{n}",
            trace_id=uuid.uuid4().hex,
        )
    connection.close()


def start_pipeline_workers(
    database_url: str, workers: int, *, batch: int = 100, logs: Path | None = None
) -> tuple[str, list[subprocess.Popen]]:
    """Start the pipeline's worker setup on ``database_url``: ``automate_worker
    --dispatch-only`` handing batches of ``batch`` items to a Celery prefork worker of
    ``workers`` processes on Redis (``REDIS_URL``), on a queue of their own. Returns the
    queue's name and the processes (stop them with :func:`stop`); give them a few seconds
    to boot before timing anything."""
    import uuid

    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    env = env_for(database_url, CELERY_BROKER_URL=REDIS_URL, BENCH_QUEUE=queue_name)
    celery = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
    celery += ["--pool", "prefork", "--concurrency", str(workers), "--queues", queue_name]
    celery += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    celery += ["--prefetch-multiplier", "4"]
    dispatch = [sys.executable, "-m", "django", "automate_worker", "--dispatch-only"]
    dispatch += ["--batch", str(batch), "--poll", "0.05"]
    logs = logs or Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))
    return queue_name, [
        start(celery, env, logs / f"bench-celery-{queue_name}.log"),
        start(dispatch, env, logs / f"bench-dispatch-{queue_name}.log"),
    ]
