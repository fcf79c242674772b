"""A signing secret another process just stored is refused as a credential at once.

The profiles' signing secret references are cached per process (tests in
test_connection_cache.py); the credential check also asks the table
(automate.signing.is_profile_signing_secret) for any name the cache did not list. The
other process is played by ``QuerySet.update()``, which sends no post_save, so this
process's cache is not cleared.
"""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automate import connections, signing
from automate.models import ConnectionProfile
from automate_core import secrets

pytestmark = pytest.mark.django_db(transaction=True)

GRANTED = {"HOOK_NEW": {"hosts": ["api.example.com"]}}


@pytest.fixture
def warm_cache(settings, monkeypatch):
    """A 5 s signing cache, filled now, with the clock stopped inside it."""
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "CONNECTION_CACHE_SECONDS": 5,
        "SECRET_GRANTS": GRANTED,
    }
    monkeypatch.setattr(connections.time, "monotonic", lambda: 100.0)
    ConnectionProfile.objects.create(
        key="hooks", connector_key="my_service", webhook_secrets=["secret://HOOK_OLD"]
    )
    assert "HOOK_NEW" not in secrets.signing_secret_names()


def another_process_stores(*references: str) -> None:
    ConnectionProfile.objects.filter(key="hooks").update(webhook_secrets=list(references))


def test_signing_probe__a_secret_stored_elsewhere_is_refused_at_once(warm_cache):
    another_process_stores("secret://HOOK_NEW", "secret://HOOK_OLD")
    assert "HOOK_NEW" not in secrets.signing_secret_names()  # the cache has not seen it
    with pytest.raises(secrets.SecretNotGranted) as refused:
        secrets.check_grant("secret://HOOK_NEW", use="http_request", host="api.example.com")
    assert "webhook signing secret" in refused.value.message


def test_signing_probe__a_connection_naming_it_is_refused_at_once(warm_cache):
    another_process_stores("secret://HOOK_NEW")
    client = connections.Connection(
        key="crm", connector_key="my_service", config={"token": "secret://HOOK_NEW"}
    )
    with pytest.raises(secrets.SecretNotGranted):
        connections.check_no_signing_secret(client)


def test_signing_probe__a_secret_removed_elsewhere_is_refused_until_the_cache_forgets_it(
    warm_cache,
):
    # The cache errs on the safe side: a secret it still lists is refused without a query.
    another_process_stores()
    with CaptureQueriesContext(connection) as captured, pytest.raises(secrets.SecretNotGranted):
        secrets.check_not_signing("secret://HOOK_OLD", use="http_request")
    assert len(captured.captured_queries) == 0


def test_signing_probe__an_ordinary_credential_costs_one_query(warm_cache):
    with CaptureQueriesContext(connection) as captured:
        name = secrets.check_grant("secret://HOOK_NEW", use="http_request", host="api.example.com")
    assert name == "HOOK_NEW"
    assert len(captured.captured_queries) == 1


def test_signing_probe__async_code_keeps_to_the_cached_references(warm_cache):
    """An async client's per-request check runs in the event loop, where the database may
    not be read: the probe stays out, the cached references still refuse."""

    async def check(reference: str) -> str:
        return secrets.check_not_signing(reference, use="code")

    assert asyncio.run(check("secret://API_KEY")) == "API_KEY"
    with pytest.raises(secrets.SecretNotGranted):
        asyncio.run(check("secret://HOOK_OLD"))


def test_signing_probe__async_code_reads_expired_references_outside_the_loop(
    warm_cache, monkeypatch
):
    """Once the cached references expire, an async client's check reads them again in a
    thread of its own (reading them in the loop raised SynchronousOnlyOperation), and a
    secret another process stored meanwhile is refused."""
    another_process_stores("secret://HOOK_NEW")
    monkeypatch.setattr(connections.time, "monotonic", lambda: 106.0)  # past the 5 s

    async def check(reference: str) -> str:
        return secrets.check_not_signing(reference, use="code")

    with pytest.raises(secrets.SecretNotGranted):
        asyncio.run(check("secret://HOOK_NEW"))
    assert asyncio.run(check("secret://HOOK_OLD")) == "HOOK_OLD"


def test_signing_probe__a_connection_looked_up_from_a_loop_is_read_outside_it(warm_cache):
    async def find(key: str) -> connections.Connection | None:
        return connections.find_connection(key)

    found = asyncio.run(find("hooks"))
    assert found is not None
    assert found.secrets == ("secret://HOOK_OLD",)
    assert asyncio.run(find("missing")) is None


def test_signing_probe__postgresql_answers_in_sql_without_reading_the_lists(warm_cache, postgres):
    """On PostgreSQL the probe is a containment test that returns at most one row, so a
    credential check costs the same whatever the profiles' lists hold."""
    another_process_stores("secret://HOOK_NEW", "secret://HOOK_OLD")
    with CaptureQueriesContext(connection) as captured:
        assert signing.is_profile_signing_secret("HOOK_NEW")
        assert not signing.is_profile_signing_secret("API_KEY")
    for query in captured.captured_queries:
        sql = query["sql"]
        assert "@>" in sql and "LIMIT 1" in sql
        assert not sql.startswith('SELECT "automate_connectionprofile"."webhook_secrets"')
