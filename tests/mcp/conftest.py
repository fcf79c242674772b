"""A real MCP server (the official SDK, tests/mcp/mcp_server.py) in a subprocess on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")
TOKEN = "s3cret-mcp-token"
#: The documented allow-list for internal MCP hosts, as a project would configure it.
LOOPBACK_POLICY = {"HTTP_ALLOW_NETWORKS": ["127.0.0.0/8", "::1/128"], "HTTP_ALLOWED_PORTS": "*"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class RunningServer:
    port: int
    token: str
    record: Path
    process: subprocess.Popen
    path: str = "/mcp"
    late_tool_flag: Path | None = None

    def offer_late_tool(self, offered: bool) -> None:
        """List ``late_tool`` from now on, or stop listing it."""
        assert self.late_tool_flag is not None
        if offered:
            self.late_tool_flag.touch()
        else:
            self.late_tool_flag.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_server(
    tmp_path: Path,
    *,
    port: int | None = None,
    extra: tuple[str, ...] = (),
    path: str = "/mcp",
    token: str = TOKEN,
) -> RunningServer:
    port = port or free_port()
    record = tmp_path / f"calls-{port}.jsonl"
    log = tmp_path / f"server-{port}.log"
    flag = tmp_path / f"late-tool-{port}"
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                str(SERVER_SCRIPT),
                "--port",
                str(port),
                "--token",
                token,
                "--record",
                str(record),
                "--late-tool-flag",
                str(flag),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the MCP test server exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return RunningServer(port, token, record, process, path, flag)
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait(10)
    raise RuntimeError("the MCP test server did not start within 30 s")


@pytest.fixture(scope="session")
def mcp_server(tmp_path_factory) -> Iterator[RunningServer]:
    """One server for the session (several tools, two per tools/list page); tests that
    look at what it received compare counts, as other tests call it too."""
    server = start_server(tmp_path_factory.mktemp("mcp"))
    yield server
    server.stop()


@pytest.fixture
def own_mcp_server(tmp_path) -> Iterator[RunningServer]:
    """A server of the test's own, for tests that stop or restart it."""
    server = start_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def loopback_allowed(settings) -> None:
    settings.AUTOMATE = {**settings.AUTOMATE, **LOOPBACK_POLICY}


# -- stdio servers ----------------------------------------------------------------------

STDIO_SCRIPT = Path(__file__).with_name("stdio_server.py")


def stdio_entry(*extra: str, **entry) -> dict:
    """A MCP_STDIO_SERVERS entry running tests/mcp/stdio_server.py with ``extra`` options."""
    return {"command": [sys.executable, str(STDIO_SCRIPT), *extra], **entry}


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper counts as gone)."""
    if not Path("/proc/self/stat").exists():  # no procfs: zombies count as alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_all_gone(*paths: Path, within: float = 10.0) -> None:
    """Every pid written to ``paths`` has exited (the SDK's kill escalation takes ~4 s)."""
    found = [pid for path in paths for pid in pids(path)]
    assert found, "the stdio server never wrote its pid"
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in found if alive(pid)], "a stdio server process was left running"


@pytest.fixture
def stdio_servers(settings):
    """Declare stdio servers for one test: ``stdio_servers(clock=stdio_entry(...))``."""

    def declare(**entries) -> None:
        settings.AUTOMATE = {**settings.AUTOMATE, "MCP_STDIO_SERVERS": entries}

    return declare
