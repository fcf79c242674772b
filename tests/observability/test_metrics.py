"""Prometheus: the counters, histograms and gauges as a scrape shows them, across
processes (PROMETHEUS_MULTIPROC_DIR) and from ``automate_worker --metrics-port``."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request

import pytest

from automate import metrics as app_metrics
from automate_core.models import OutboxItem
from automate_core.observability import metrics
from tests.automate.test_webhook_view import post
from tests.engine_support import start, stop, wait_for, worker_env
from tests.observability.conftest import drain, notify_workflow, send_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.observability.urls")]

TOKEN = "scrape-token-for-tests"


def scrape(client) -> dict[tuple[str, tuple], float]:

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def parse(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(autouse=True)
def fresh_gauges(settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "METRICS_GAUGE_CACHE_SECONDS": 0,
        "METRICS_TOKEN": TOKEN,
    }


def test_metrics__webhooks_runs_steps_and_http_are_counted(
    prometheus, target, loopback, csrf_client, client
):
    notify_workflow(target.url("/hook"))
    before = scrape(client)
    assert send_event(csrf_client).status_code == 202
    assert post(csrf_client, b'{"id": "x"}', signature="bad").status_code == 401
    assert post(csrf_client, b"{}", key="no_such_connector").status_code == 404
    assert drain() == {"done": 1}
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("automate_webhooks_total", connector="my_service", status="202") == 1
    assert delta("automate_webhooks_total", connector="my_service", status="401") == 1
    # An unknown key is not a label value (a scanner cannot grow the series).
    assert delta("automate_webhooks_total", connector="unknown", status="404") == 1
    assert not any("no_such_connector" in str(labels) for _, labels in after)
    assert delta("automate_webhook_duration_seconds_count", connector="my_service") == 2
    assert delta("automate_runs_total", workflow="notify", outcome="completed") == 1
    assert delta("automate_step_attempts_total", step_type="http_request", outcome="succeeded") == 1
    assert delta("automate_step_duration_seconds_count", step_type="http_request") == 1
    assert delta("automate_queue_lag_seconds_count") == 1
    assert delta("automate_http_requests_total", host="127.0.0.1", status="200") == 1


def test_metrics__refused_ssrf_and_failed_steps_are_counted(
    prometheus, target, csrf_client, client
):
    notify_workflow(target.url("/hook"), max_attempts=1)
    before = scrape(client)
    send_event(csrf_client)
    drain()
    after = scrape(client)
    refused = ("automate_http_requests_total", {"host": "127.0.0.1", "status": "refused"})
    assert value(after, refused[0], **refused[1]) - value(before, refused[0], **refused[1]) == 1
    failed = {"step_type": "http_request", "outcome": "failed"}
    assert (
        value(after, "automate_step_attempts_total", **failed)
        - value(before, "automate_step_attempts_total", **failed)
        == 1
    )
    assert value(after, "automate_runs_total", workflow="notify", outcome="dead") >= 1
    assert target.requests == []


def test_metrics__gauges_read_the_queue(prometheus, client):
    from django.utils import timezone

    now = timezone.now()
    make = OutboxItem.objects.create
    make(connector_key="a", trace_id="t1")  # due
    make(connector_key="a", trace_id="t2", status="failed")  # due (a retry)
    make(connector_key="a", trace_id="t3", available_at=now + timezone.timedelta(hours=1))
    make(connector_key="a", trace_id="t4", status="leased")
    make(connector_key="a", trace_id="t5", status="dead")
    make(connector_key="a", trace_id="t6", status="done")
    samples = scrape(client)
    assert value(samples, "automate_outbox_items", state="due") == 2
    assert value(samples, "automate_outbox_items", state="scheduled") == 1
    assert value(samples, "automate_outbox_items", state="leased") == 1
    assert value(samples, "automate_outbox_items", state="dead") == 1
    assert value(samples, "automate_dead_letters") == 1
    assert value(samples, "automate_runs_waiting") == 0


def test_metrics__gauges_are_cached(prometheus, settings, django_assert_num_queries):
    settings.AUTOMATE = {**settings.AUTOMATE, "METRICS_GAUGE_CACHE_SECONDS": 60}
    with django_assert_num_queries(1):  # one query (a UNION) ...
        first = app_metrics.read_gauges(fresh=True)
    OutboxItem.objects.create(connector_key="a", trace_id="t")
    with django_assert_num_queries(0):  # ... then none while cached
        assert app_metrics.read_gauges() == first


def test_metrics__host_labels_are_bounded(prometheus, monkeypatch):
    monkeypatch.setattr(metrics, "_hosts", set())
    monkeypatch.setattr(metrics, "MAX_HOSTS", 2)
    assert [metrics._bounded_host(h) for h in ("a.test", "b.test", "c.test", "a.test")] == [
        "a.test",
        "b.test",
        "other",
        "a.test",
    ]


def test_metrics__view_is_404_without_prometheus_client(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr(metrics, "_m", metrics._UNSET)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert b"prometheus" in response.content
    metrics.webhook("x", 202, 0.1)  # a no-op, not an error


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_env(**extra: str) -> dict[str, str]:
    import os

    env = worker_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *sys.path])
    return env


@pytest.mark.slow
def test_metrics__worker_processes_share_a_multiprocess_directory(
    postgres, prometheus, target, csrf_client, client, tmp_path, monkeypatch
):
    """Two ``automate_worker --once`` processes write their counters to one directory;
    a scrape in this process (the web server's role) sums them."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    notify_workflow(target.url("/hook"), max_attempts=1)
    for n in range(2):
        send_event(csrf_client, event_id=f"evt_{n}")
        worker = start(
            ["example/manage.py", "automate_worker", "--once"],
            _worker_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)),
        )
        worker.wait(60)
        errors = stop(worker)
        assert worker.returncode == 0, errors
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    samples = scrape(client)
    failed = {"step_type": "http_request", "outcome": "failed"}
    assert value(samples, "automate_step_attempts_total", **failed) == 2
    assert value(samples, "automate_runs_total", workflow="notify", outcome="dead") == 2


@pytest.mark.slow
def test_metrics__automate_worker_serves_metrics_on_its_port(prometheus, postgres):
    """To a scrape with the worker's METRICS_TOKEN (401 without it)."""
    port, token = _free_port(), "worker-scrape-token"
    worker = start(
        ["example/manage.py", "automate_worker", "--metrics-port", str(port), "--poll", "0.2"],
        _worker_env(AUTOMATE_WORKER_EXTRA=json.dumps({"METRICS_TOKEN": token})),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    refused = []

    def listening() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass  # served without the token: the assertion below says so
        except urllib.error.HTTPError as error:
            refused.append((error.code, error.headers["WWW-Authenticate"]))
            return True
        except OSError:
            return False
        return True

    try:
        wait_for(listening, timeout=30, what="the worker's metrics server")
        scrape = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(scrape, timeout=10) as response:
            text = response.read().decode()
    finally:
        stop(worker)
    assert refused == [(401, 'Bearer realm="metrics"')]
    samples = parse(text)
    assert ("automate_outbox_items", (("state", "due"),)) in samples
    assert any(name == "automate_dead_letters" for name, _ in samples)
