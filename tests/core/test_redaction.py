"""The redaction layer, and the canary: a resolved secret never shows up where we keep text."""

from __future__ import annotations

import io
import logging
import traceback
import uuid

import httpx
import pytest

from automate_core import redaction
from automate_core.http import SSRFError, safe_client, ssrf_safe_request
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.redaction import MASK, RedactingFilter
from tests.core.helpers import send


@pytest.fixture
def captured():
    """Everything logged under ``automate`` through a handler with the redacting filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(payload)s"))
    logger = logging.getLogger("automate")
    logger.addHandler(handler)

    class Defaults(logging.Filter):
        def filter(self, record):
            if not hasattr(record, "payload"):
                record.payload = ""
            return True

    handler.addFilter(Defaults())
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


# -- Units ---------------------------------------------------------------------------


def test_redact__replaces_remembered_values_and_escaped_forms():
    redaction.remember("p@ss word/1")
    assert redaction.redact("a p@ss word/1 b") == f"a {MASK} b"
    assert redaction.redact("?k=p%40ss%20word%2F1") == f"?k={MASK}"
    assert redaction.redact("k=p%40ss+word%2F1") == f"k={MASK}"


def test_redact__a_value_containing_another_is_masked_whole():
    redaction.remember("token-abc")
    redaction.remember("token-abc-long-form")
    assert redaction.redact("x token-abc-long-form y token-abc") == f"x {MASK} y {MASK}"


def test_redact__values_remembered_later_and_forgotten_take_effect():
    redaction.remember("first-secret")
    assert redaction.redact("first-secret second-secret") == f"{MASK} second-secret"
    redaction.remember("second-secret")
    assert redaction.redact("first-secret second-secret") == f"{MASK} {MASK}"
    redaction.forget_all()
    assert redaction.redact("first-secret (x)") == "first-secret (x)"
    assert redaction.redact("regex chars .*+?") == "regex chars .*+?"


def test_redact__ignores_short_values():
    redaction.remember("abc")
    assert redaction.redact("abc abc") == "abc abc"


def test_redact_data__walks_nested_data():
    redaction.remember("nested-secret")
    data = {"a": ["x nested-secret", ("nested-secret",)], "nested-secret": 3, "n": 1}
    assert redaction.redact_data(data) == {"a": [f"x {MASK}", (MASK,)], MASK: 3, "n": 1}


def test_redact_data__a_flat_dict_of_text_is_searched_at_once_and_masked_as_before():
    redaction.remember("header-secret")
    redaction.remember("two\nlines")  # holds the separator of the one search
    headers = {"x-token": "Bearer header-secret", "header-secret": "v", "ua": "curl"}
    assert redaction.redact_data(headers) == {"x-token": f"Bearer {MASK}", MASK: "v", "ua": "curl"}
    clean = {"content-type": "application/json", "x-github-event": "push"}
    copy = redaction.redact_data(clean)
    assert copy == clean and copy is not clean  # a copy, as before
    # Matched only across a key and a value: each is searched again, neither is changed.
    assert redaction.redact_data({"two": "lines"}) == {"two": "lines"}
    assert redaction.redact_data({"k": "two\nlines"}) == {"k": MASK}


def _fail_with(value: str) -> None:
    try:
        raise ValueError(f"inner {value}")
    except ValueError as inner:
        raise AutomateError(ErrorCodes.INTERNAL, f"outer {value}", details={"v": value}) from inner


def test_scrub_exception__covers_message_details_and_causes():
    secret = "chained-" + uuid.uuid4().hex
    redaction.remember(secret)
    with pytest.raises(AutomateError) as info:
        _fail_with(secret)
    exc = redaction.scrub_exception(info.value)
    assert exc is info.value
    assert str(exc) == f"[internal] outer {MASK}"
    assert exc.details == {"v": MASK}
    assert str(exc.__cause__) == f"inner {MASK}"
    assert secret not in "".join(traceback.format_exception(exc))


def test_redacting_filter__message_args_extra_exception_and_stack(captured):
    redaction.remember("filter-secret")
    logger = logging.getLogger("automate.test")
    logger.warning("token %s", "filter-secret", extra={"payload": {"t": "filter-secret"}})
    try:
        raise RuntimeError("boom filter-secret")
    except RuntimeError:
        logger.exception("failed", stack_info=True)
    output = captured.getvalue()
    assert "filter-secret" not in output
    assert output.count(MASK) >= 3
    assert "RuntimeError: boom" in output


def test_redacting_filter__survives_a_broken_format_string():
    redaction.remember("format-secret")
    record = logging.LogRecord("automate", logging.INFO, "", 0, "%d items", ("x",), None)
    assert RedactingFilter().filter(record) is True
    assert record.args == ("x",)  # left for logging to report


# -- The canary ------------------------------------------------------------------------


def test_canary__never_in_logs_rows_or_exception_text(server, captured, db):
    canary = f"canary-{uuid.uuid4().hex}"

    def echo_auth(h):
        send(h, 200, h.headers["Authorization"].encode())

    def fail_with_it(h):
        send(h, 500, f"upstream rejected {h.headers['Authorization']}".encode())

    server.routes["/ok"] = echo_auth
    server.routes["/fail"] = fail_with_it
    server.routes["/away"] = lambda h: send(
        h, 302, b"", {"Location": f"http://10.0.0.1/?k={canary}"}
    )
    texts: list[str] = []
    logger = logging.getLogger("automate.test")

    with server.allowed(SECRETS={"canary": canary}):
        # 1. A request that resolves the canary and sends it.
        response = ssrf_safe_request("GET", server.url("/ok"), credentials_ref="secret://canary")
        assert response.content == f"Bearer {canary}".encode()  # it did go out, once
        logger.info(
            "called %s, got %s",
            server.url("/ok"),
            response.text,
            extra={"payload": dict(response.request.headers)},
        )

        # 2. Failing requests: an HTTP error, a refused redirect, an unresolvable name.
        failing = ssrf_safe_request("GET", server.url("/fail"), credentials_ref="secret://canary")
        with pytest.raises(httpx.HTTPStatusError) as status_error:
            failing.raise_for_status()
        with pytest.raises(SSRFError) as refused:
            ssrf_safe_request("GET", server.url("/away"), credentials_ref="secret://canary")
        with safe_client() as client, pytest.raises(httpx.ConnectError) as unresolved:
            client.get(f"http://{canary}.invalid/")
        raised = [status_error.value, refused.value, unresolved.value]
        for exc in raised:  # exception text as the library raised it
            texts.append(
                "".join(traceback.format_exception_only(exc)) + repr(exc) + str(exc.__context__)
            )
        texts.append(str(refused.value.as_dict()))
        # 3. Logged errors, one of them made by application code from the failing response.
        app_error = AutomateError(ErrorCodes.UNAVAILABLE, f"service said: {failing.text}")
        for exc in [*raised, app_error]:
            try:
                raise exc
            except Exception:
                logger.exception("step failed: %s", exc, extra={"payload": failing.text})

        # 4. Stored rows: outbox headers and the recorded error.
        item = queue.enqueue(
            "my_service",
            headers={"authorization": f"Bearer {canary}", "x-echo": failing.text},
            trace_id="t" * 32,
        ).item
        claimed = queue.claim(batch=1)
        assert [c.pk for c in claimed] == [item.pk]
        queue.fail(claimed[0], app_error)
        row = OutboxItem.objects.values("headers", "last_error").get(pk=item.pk)

    logged = captured.getvalue()
    assert "SSRF protection refused" in logged
    assert "step failed" in logged
    for text in [logged, str(row), *texts]:
        assert canary not in text
    assert MASK in logged
    assert MASK in str(row)
