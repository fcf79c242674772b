"""A real stdio MCP server for the tests, built with the official SDK (run as a program).

    AUTOMATE["MCP_STDIO_SERVERS"] = {"clock": {"command": [sys.executable, __file__]}}

Speaks MCP over stdin/stdout like the reference servers. Options make it misbehave:
``--pid-file PATH`` appends its pid (so tests can check it is gone afterwards),
``--grandchild-pid-file PATH`` starts a sleeping child process and appends its pid,
``--exit-at-once CODE`` writes to stderr and exits before any handshake (the message
quotes the variable named by ``--leak-env``, to test that secrets are redacted), and
``--hang-at-start`` sleeps before serving (a server that never completes the handshake).
"""

import argparse
import datetime
import os
import subprocess
import sys
import time
from zoneinfo import ZoneInfo


def build():
    # The SDK is imported here, after main() wrote the pid: importing it takes a while on a
    # loaded machine, and a test that kills a server during start-up must know its pid.
    # (No `from __future__ import annotations` in this file: the SDK reads the tools'
    # annotations, and CurrentTime is local.)
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations
    from pydantic import BaseModel

    class CurrentTime(BaseModel):
        timezone: str
        datetime: str

    server = MCPServer("Clock")

    @server.tool(
        description="The current time in a timezone.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def get_current_time(timezone: str) -> CurrentTime:
        now = datetime.datetime.now(ZoneInfo(timezone))
        return CurrentTime(timezone=timezone, datetime=now.isoformat(timespec="seconds"))

    @server.tool(description="Read environment variables of this server process.")
    def env_values(names: list[str]) -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in names}

    @server.tool(description="Sleep for a while, then answer.")
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    @server.tool(description="Answer with a long text.", structured_output=False)
    def big(size: int) -> str:
        return "x" * size

    return server


def append_pid(path: str, pid: int) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{pid}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid-file")
    parser.add_argument("--grandchild-pid-file")
    parser.add_argument("--exit-at-once", type=int)
    parser.add_argument("--leak-env", default="")
    parser.add_argument("--hang-at-start", action="store_true")
    args = parser.parse_args()
    if args.pid_file:
        append_pid(args.pid_file, os.getpid())
    if args.exit_at_once is not None:
        leaked = os.environ.get(args.leak_env, "") if args.leak_env else ""
        print(f"fatal: cannot log in with token {leaked!r}", file=sys.stderr, flush=True)
        sys.exit(args.exit_at_once)
    if args.grandchild_pid_file:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        append_pid(args.grandchild_pid_file, child.pid)
    if args.hang_at_start:
        time.sleep(600)
    build().run()


if __name__ == "__main__":
    main()
