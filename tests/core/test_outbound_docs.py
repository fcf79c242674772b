"""The outbound-safety pages: their Python examples must at least be valid Python."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["outbound-http.md", "rate-limits.md", "secrets.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for page in PAGES:
        text = (DOCS / page).read_text()
        for index, block in enumerate(BLOCK.findall(text)):
            yield pytest.param(block, id=f"{page}#{index}")


@pytest.mark.parametrize("source", list(_blocks()))
def test_outbound_docs__examples_compile(source):
    compile(source, "<doc>", "exec")


def test_outbound_docs__rate_limit_example_runs(fake_dns):
    import respx

    from automate_core.throttling import RateLimiter

    RateLimiter("external_api", "100/min").reset()
    source = BLOCK.findall((DOCS / "rate-limits.md").read_text())[0]
    with respx.mock:
        respx.get("https://api.example.com/data").respond(200, json={})
        namespace: dict = {}
        exec(source, namespace)
    assert namespace["response"].status_code == 200
    assert namespace["limiter"].remaining == 99
