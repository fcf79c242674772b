"""Replays the curl requests of docs/api.md, in order, with Django's test client.

Each ```bash block holding a ``curl`` command is a request; its last line ``# NNN ...`` is
the documented status, and the first ```json block after it the documented answer.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# Different on every run: compared by presence, not by value.
VOLATILE = {"trace_id", "created_at", "updated_at", "started_at", "finished_at", "received_at"}


@dataclass
class DocRequest:
    method: str
    path: str
    user: str
    password: str
    status: int
    body: Any = None
    answer: Any = field(default=None)


def requests_in(text: str) -> list[DocRequest]:
    found: list[DocRequest] = []
    answered = True
    for lang, block in FENCE.findall(text):
        if lang == "bash" and block.lstrip().startswith("curl"):
            found.append(_parse_curl(block))
            answered = False
        elif lang == "json" and not answered:
            found[-1].answer = json.loads(block)
            answered = True
    return found


def _parse_curl(block: str) -> DocRequest:
    *command, status_line = block.strip().splitlines()
    status = re.fullmatch(r"# (\d{3})\b.*", status_line)
    assert status, f"a curl block must end with '# STATUS': {block!r}"
    args = shlex.split(" ".join(line.rstrip("\\") for line in command))
    options: dict[str, str] = {}
    url = ""
    words = iter(args[1:])
    for word in words:
        if word in ("-u", "-H", "-d", "-X"):
            options[word] = next(words)
        else:
            url = word
    user, _, password = options["-u"].partition(":")
    body = json.loads(options["-d"]) if "-d" in options else None
    method = options.get("-X") or ("POST" if body is not None else "GET")
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return DocRequest(method, path, user, password, int(status.group(1)), body)


def send(client: Any, request: DocRequest) -> Any:
    token = base64.b64encode(f"{request.user}:{request.password}".encode()).decode()
    kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Basic {token}"}
    if request.body is not None:
        kwargs.update(data=request.body, content_type="application/json")
    return getattr(client, request.method.lower())(request.path, **kwargs)


def comparable(value: Any) -> Any:
    """``value`` with the volatile fields reduced to whether they are set."""
    if isinstance(value, dict):
        return {k: (v is not None) if k in VOLATILE else comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value
