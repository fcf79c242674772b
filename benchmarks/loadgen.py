"""A load generator for signed GitHub webhooks, run as its own process.

    python -m benchmarks.loadgen --port 8000 --path /webhooks/github/ --seconds 10

Opens ``--concurrency`` connections at a time (gunicorn's sync workers close each one),
sends a signed delivery with a fresh X-GitHub-Delivery id, and prints one JSON line:
status counts and every latency in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import time
import uuid


def signed_delivery(secret: bytes, n: int, prefix: str) -> tuple[str, str, bytes]:
    """Delivery ``n`` of a run: its X-GitHub-Delivery id, its X-Hub-Signature-256, its body.

    The body names the delivery: a body signed once is accepted once (automate.replays),
    so two runs against one database must not send the same bodies.
    """
    delivery = f"{prefix}-{n}"
    body = json.dumps(
        {
            "action": "opened",
            "number": n,
            "delivery": delivery,
            "repository": {"full_name": "acme/bench"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return delivery, signature, body


def request_bytes(path: str, port: int, secret: bytes, n: int, prefix: str) -> bytes:
    delivery, signature, body = signed_delivery(secret, n, prefix)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
        f"X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {delivery}\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def client(args, secret: bytes, prefix: str, counter, stats, deadline: float) -> None:
    while time.monotonic() < deadline:
        n = next(counter)
        data = request_bytes(args.path, args.port, secret, n, prefix)
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            writer.write(data)
            await writer.drain()
            response = await reader.read()
            writer.close()
            status = response[9:12].decode() if response.startswith(b"HTTP/") else "bad"
        except OSError as exc:
            status = type(exc).__name__
        stats["latencies"].append(time.perf_counter() - started)
        stats["status"][status] = stats["status"].get(status, 0) + 1


async def main(args) -> None:
    import itertools

    secret = args.secret.encode()
    prefix = f"{uuid.uuid4().hex[:8]}-{os.getpid()}"
    stats: dict = {"latencies": [], "status": {}}
    counter = itertools.count()
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    await asyncio.gather(
        *(client(args, secret, prefix, counter, stats, deadline) for _ in range(args.concurrency))
    )
    stats["elapsed"] = time.monotonic() - started
    print(json.dumps(stats))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/github/")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--secret", default="demo-github-secret")
    asyncio.run(main(parser.parse_args()))
