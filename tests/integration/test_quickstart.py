"""docs/quickstart.md, run as written in a fresh project, so it cannot drift from the code.

Its blocks are taken from the page, in order, never retyped here:

* a ```python block whose first line is ``# PATH`` is that file of the new project
  (``# PATH (add at the end)``: appended to the file ``startproject`` wrote);
* a ```bash block runs in bash, in the project directory, with ``python``, ``pip`` and
  ``django-admin`` pointing at this interpreter and this checkout's src/ (``pip`` only
  records what it was asked to install); exported variables carry over to later blocks;
* the block that starts ``runserver`` runs in the background on a free port, which
  replaces 8000 in the other blocks;
* ```console blocks are shown, not run.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_LABEL = re.compile(r"# (\S+\.py)( \(add at the end\))?\n")


def blocks() -> list[tuple[str, str]]:
    return FENCE.findall(QUICKSTART.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Newcomer:
    """A shell in a fresh directory, where the quickstart's commands run."""

    def __init__(self, home: Path, port: int) -> None:
        self.project = home / "project"
        self.project.mkdir()
        self.state = home / "exported.sh"
        self.pip_log = home / "pip-args"
        self.port = port
        shims = home / "bin"
        shims.mkdir()
        python = shlex.quote(sys.executable)
        self._shim(shims / "python", f'exec {python} "$@"')
        self._shim(shims / "django-admin", f'exec {python} -m django "$@"')
        self._shim(shims / "pip", f'echo "$@" >> {shlex.quote(str(self.pip_log))}')
        self.env = {
            name: value
            for name, value in os.environ.items()
            # The test run's own settings and services are none of the new project's.
            if not name.startswith(("DJANGO_", "DATABASE_", "AUTOMATE_", "CELERY_", "PYTHON"))
        }
        self.env["PATH"] = f"{shims}{os.pathsep}{self.env.get('PATH', '/usr/bin:/bin')}"
        self.env["PYTHONPATH"] = str(ROOT / "src")

    @staticmethod
    def _shim(path: Path, command: str) -> None:
        path.write_text(f"#!/bin/sh\n{command}\n")
        path.chmod(0o755)

    def script(self, block: str, overrides: dict[str, str] | None = None) -> str:
        """``block`` in bash, after the variables earlier blocks exported (and then
        ``overrides``); what it exports is kept for the next block, unless overridden."""
        block = block.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        block = block.replace("manage.py runserver", f"manage.py runserver 127.0.0.1:{self.port}")
        lines = ["set -eo pipefail", f"if [ -f {self.state} ]; then . {self.state}; fi"]
        lines += [
            f"export {name}={shlex.quote(value)}" for name, value in (overrides or {}).items()
        ]
        lines.append(block)
        if not overrides:
            lines.append(f"export -p > {self.state}")
        return "\n".join(lines) + "\n"

    def run(self, block: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-c", self.script(block, overrides)],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
        return result

    @contextmanager
    def serving(self, block: str) -> Iterator[None]:
        # --noreload: one process, ended with its own session below.
        block = block.replace("runserver", "runserver --noreload")
        log = (self.project.parent / "server.log").open("w")
        server = subprocess.Popen(
            ["bash", "-c", self.script(block)],
            cwd=self.project,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_for_port(server)
            yield
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            log.close()

    def _wait_for_port(self, server: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"runserver exited: {self.server_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"runserver did not listen within 60 s: {self.server_log()}")

    def server_log(self) -> str:
        return (self.project.parent / "server.log").read_text()

    def write(self, block: str) -> None:
        label = FILE_LABEL.match(block)
        assert label, f"a python block must start with '# PATH': {block[:60]!r}"
        path = self.project / label.group(1)
        if label.group(2):
            assert path.exists(), f"{path.name} should exist before adding to it"
            path.write_text(path.read_text() + "\n" + block)
        else:
            path.write_text(block)


def last_line(output: str) -> str:
    # Django 5.2's shell may first say which models it imported.
    return output.strip().splitlines()[-1]


def http_status(output: str) -> int:
    return int(re.search(r"^HTTP/[\d.]+ (\d{3})", output, re.M).group(1))


@pytest.mark.slow
def test_quickstart__as_written__verifies_and_stores_a_signed_webhook(tmp_path):
    me = Newcomer(tmp_path, free_port())
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    with ExitStack() as stack:
        served = False
        for language, block in blocks():
            if language == "python":
                me.write(block)
            elif language == "bash" and "runserver" in block:
                stack.enter_context(me.serving(block))
                served = True
            elif language == "bash":
                outputs[block] = me.run(block)
            else:
                assert language == "console", f"unexpected block language {language!r}"
        assert served, "the quickstart starts a server"
        check_outputs(me, outputs)
    check_pip_install(me.pip_log.read_text())


def check_pip_install(asked: str) -> None:
    """pip was asked for this distribution (a clone's path), with extras that exist."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = asked.splitlines()
    assert lines, "the quickstart says how to install"
    for line in lines:
        command, *requirements = shlex.split(line)
        assert command == "install" and requirements, line
        for requirement in requirements:
            path, _, extras = requirement.partition("[")
            assert Path(path).name == project["name"], requirement
            for extra in filter(None, extras.rstrip("]").split(",")):
                assert extra in project["optional-dependencies"], requirement


def check_outputs(me: Newcomer, outputs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    (migrate,) = [b for b in outputs if "manage.py migrate" in b]
    # No warning: automate.W001 would say the exported secret was not found.
    assert "System check identified no issues" in outputs[migrate].stdout, outputs[migrate]
    (deliver,) = [b for b in outputs if "curl" in b]
    (show,) = [b for b in outputs if "manage.py shell" in b]
    stored = "[('github', 'ping', 'pending')]"

    first = outputs[deliver].stdout
    assert http_status(first) == 202, f"{first}\n{me.server_log()}"
    trace_id = re.search(r'\{"trace_id": ?"([^"]+)", ?"id": ?\d+\}', first).group(1)
    assert last_line(outputs[show].stdout) == stored
    assert f"`{stored}`" in QUICKSTART.read_text()  # what the page says it prints

    # What the page says next: a redelivery is answered 200 and stores nothing...
    again = me.run(deliver).stdout
    assert http_status(again) == 200
    assert trace_id in again
    # ... and the wrong secret gets a 401 and stores nothing.
    forged = me.run(deliver, AUTOMATE_SECRET_GITHUB_WEBHOOK_SECRET="not the secret").stdout
    assert http_status(forged) == 401
    assert last_line(me.run(show).stdout) == stored


def test_readme__install_in_your_project_blocks_are_the_quickstarts():
    """README's short version shows the same settings and URLs as the tested page."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install in your project", 1)[1].split("\n## ", 1)[0]
    quickstart_python = [block for language, block in blocks() if language == "python"]
    readme_python = [block for language, block in FENCE.findall(section) if language == "python"]
    assert readme_python, "README's install section shows the settings and URLs"
    for block in readme_python:
        assert block in quickstart_python, f"README block not in docs/quickstart.md:\n{block}"
