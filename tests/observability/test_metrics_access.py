"""Who may read /metrics: the bearer token, the public opt-in, DEBUG and staff users; and
the deploy check that flags a public page. The worker's ``--metrics-port`` page asks for
the same token when one is set."""

from __future__ import annotations

import urllib.error
import urllib.request
from email.message import Message

import pytest
from django.contrib.auth.models import User
from django.core import checks

from automate.checks import check_metrics_access
from automate.metrics import serve

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.observability.urls")]

TOKEN = "0123456789abcdef-scrape"


@pytest.fixture
def access(settings, prometheus):
    def configure(**keys):
        settings.AUTOMATE = {**settings.AUTOMATE, "METRICS_GAUGE_CACHE_SECONDS": 0, **keys}

    return configure


def get(client, authorization: str | None = None):
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get("/metrics", headers=headers)


def served(response) -> bool:
    return response.status_code == 200 and b"automate_outbox_items" in response.content


def test_metrics_access__refused_by_default_outside_debug(client, access):
    access()
    response = get(client)
    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content
    assert b"automate_" not in response.content


def test_metrics_access__debug_serves_without_a_token(client, access, settings):
    access()
    settings.DEBUG = True
    assert served(get(client))


def test_metrics_access__the_public_opt_in_serves_anyone(client, access):
    access(METRICS_PUBLIC=True)
    assert served(get(client))


#: Authorization headers that do not carry TOKEN as a bearer token.
NOT_THE_TOKEN = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    f"Basic {TOKEN}",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
]


@pytest.mark.parametrize("authorization", NOT_THE_TOKEN)
def test_metrics_access__a_token_is_required_once_configured(client, access, authorization):
    access(METRICS_TOKEN=TOKEN, METRICS_PUBLIC=True)  # the token wins over the opt-in
    response = get(client, authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"automate_" not in response.content


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_metrics_access__the_right_token_is_served(client, access, scheme):
    access(METRICS_TOKEN=TOKEN)
    assert served(get(client, f"{scheme} {TOKEN}"))


def test_metrics_access__the_token_may_be_a_secret_reference(client, access):
    access(METRICS_TOKEN="secret://metrics-token", SECRETS={"metrics-token": TOKEN})
    assert served(get(client, f"Bearer {TOKEN}"))
    assert get(client, "Bearer secret://metrics-token").status_code == 401


def test_metrics_access__an_unresolvable_or_empty_token_refuses_everyone(client, access):
    access(METRICS_TOKEN="secret://not-there")
    assert get(client, "Bearer ").status_code == 503
    access(METRICS_TOKEN="secret://empty", SECRETS={"empty": ""})
    assert get(client, "Bearer ").status_code == 503


def test_metrics_access__staff_users_may_read_it(client, access):
    access(METRICS_TOKEN=TOKEN)
    client.force_login(User.objects.create_user("viewer", password="pw"))
    assert get(client).status_code == 401
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    assert served(get(client))


def test_metrics_access__deploy_check_warns_when_public(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "METRICS_PUBLIC": True}
    [warning] = check_metrics_access()
    assert warning.id == "automate.W030"
    assert warning.level == checks.WARNING
    assert "automate.W030" in [
        m.id for m in checks.run_checks(include_deployment_checks=True, tags=["security"])
    ]
    settings.AUTOMATE = {**settings.AUTOMATE, "METRICS_TOKEN": TOKEN}
    assert check_metrics_access() == []
    settings.AUTOMATE = {**settings.AUTOMATE, "METRICS_PUBLIC": False, "METRICS_TOKEN": ""}
    assert check_metrics_access() == []


# -- automate_worker --metrics-port (automate.metrics.serve) ------------------------------


@pytest.fixture
def worker_page(access):
    """The page ``automate_worker --metrics-port`` serves, on a free loopback port."""
    server = serve(0)
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def fetch(url: str, authorization: str | None = None) -> tuple[int, Message, bytes]:
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def test_worker_metrics_access__without_a_token_the_port_serves_whoever_reaches_it(
    access, worker_page
):
    """Unchanged: the port binds to loopback unless told otherwise; the address is the
    restriction, ``METRICS_PUBLIC`` is not asked for."""
    access()
    status, _, body = fetch(worker_page)
    assert status == 200 and b"automate_outbox_items" in body


@pytest.mark.parametrize("authorization", NOT_THE_TOKEN)
def test_worker_metrics_access__a_token_is_required_once_configured(
    access, worker_page, authorization
):
    access(METRICS_TOKEN=TOKEN, METRICS_PUBLIC=True)
    status, headers, body = fetch(worker_page, authorization)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert b"automate_" not in body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_worker_metrics_access__the_right_token_is_served(access, worker_page, scheme):
    access(METRICS_TOKEN=TOKEN)
    status, _, body = fetch(worker_page, f"{scheme} {TOKEN}")
    assert status == 200 and b"automate_outbox_items" in body


def test_worker_metrics_access__the_token_may_be_a_secret_reference(access, worker_page):
    access(METRICS_TOKEN="secret://metrics-token", SECRETS={"metrics-token": TOKEN})
    assert fetch(worker_page, f"Bearer {TOKEN}")[0] == 200
    assert fetch(worker_page, "Bearer secret://metrics-token")[0] == 401


def test_worker_metrics_access__an_unresolvable_or_empty_token_refuses_everyone(
    access, worker_page
):
    access(METRICS_TOKEN="secret://not-there")
    status, _, body = fetch(worker_page, "Bearer ")
    assert status == 503 and b"METRICS_TOKEN" in body
    access(METRICS_TOKEN="secret://empty", SECRETS={"empty": ""})
    assert fetch(worker_page, "Bearer ")[0] == 503
