"""Connections looked up outside a transaction are kept a few seconds per process."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django import db
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automate import connections
from automate.connections import find_connection
from automate.models import ConnectionProfile

pytestmark = pytest.mark.django_db(transaction=True)


def profile(key: str = "cached", **fields) -> ConnectionProfile:
    fields.setdefault("connector_key", "my_service")
    return ConnectionProfile.objects.create(key=key, **fields)


def lookups(key: str) -> int:
    """How many queries a lookup of ``key`` made."""
    with CaptureQueriesContext(connection) as captured:
        find_connection(key)
    return len(captured.captured_queries)


@pytest.fixture
def now(settings, monkeypatch) -> list[float]:
    """Entries kept 5 s on a clock the test moves: ``now[0]`` is ``time.monotonic()``."""
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTION_CACHE_SECONDS": 5}
    now = [100.0]
    monkeypatch.setattr(connections.time, "monotonic", lambda: now[0])
    return now


def test_cache__a_second_lookup_reads_nothing():
    profile()
    assert lookups("cached") == 1
    assert lookups("cached") == 0
    assert find_connection("cached").connector_key == "my_service"


def test_cache__unknown_keys_are_kept_too():
    assert lookups("nobody") == 1
    assert lookups("nobody") == 0
    assert find_connection("nobody") is None


def test_cache__saving_or_deleting_a_profile_takes_effect_at_once():
    row = profile()
    assert find_connection("cached").enabled
    row.enabled = False
    row.save()
    assert not find_connection("cached").enabled
    row.delete()
    assert find_connection("cached") is None


def test_cache__a_change_without_signals_shows_when_the_entry_expires(now):
    profile()
    assert find_connection("cached").enabled
    ConnectionProfile.objects.filter(key="cached").update(enabled=False)  # no post_save
    now[0] += 4.9
    assert find_connection("cached").enabled
    now[0] += 0.2
    assert not find_connection("cached").enabled


def test_cache__zero_seconds_reads_every_time(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTION_CACHE_SECONDS": 0}
    profile()
    assert lookups("cached") == 1
    assert lookups("cached") == 1


def test_cache__inside_a_transaction_it_always_reads():
    profile()
    find_connection("cached")
    with transaction.atomic():
        ConnectionProfile.objects.filter(key="cached").update(enabled=False)
        assert not find_connection("cached").enabled  # what this transaction sees
        transaction.set_rollback(True)
    assert find_connection("cached").enabled


def test_cache__a_settings_change_clears_it(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTORS": {"from_settings": {}}}
    assert find_connection("from_settings").connector_key == "from_settings"
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTORS": {}}
    assert find_connection("from_settings") is None


def test_cache__is_bounded(monkeypatch):
    monkeypatch.setattr(connections, "CACHE_MAX_KEYS", 3)
    for n in range(10):
        find_connection(f"unknown-{n}")
        assert len(connections._connections.entries) <= 3


def signing_lookups() -> tuple[int, set[str]]:
    """How many queries one credential check's signing-secret lookup made, and its names."""
    from automate_core import secrets

    with CaptureQueriesContext(connection) as captured:
        names = secrets.signing_secret_names()
    return len(captured.captured_queries), names


def test_signing_cache__a_second_credential_check_reads_nothing():
    profile(webhook_secrets=["secret://HOOK_A"])
    first, second = signing_lookups(), signing_lookups()
    assert (first[0], second[0]) == (1, 0)
    assert "HOOK_A" in first[1] and first[1] == second[1]


def test_signing_cache__a_saved_or_deleted_profile_counts_at_once():
    from automate_core import secrets

    row = profile(webhook_secrets=["secret://HOOK_A"])
    assert "HOOK_A" in secrets.signing_secret_names()
    row.webhook_secrets = ["secret://HOOK_B"]
    row.save()
    with pytest.raises(secrets.SecretNotGranted):
        secrets.check_not_signing("secret://HOOK_B", use="connection")
    assert secrets.check_not_signing("secret://HOOK_A", use="connection") == "HOOK_A"
    row.delete()
    assert "HOOK_B" not in secrets.signing_secret_names()


def test_signing_cache__a_change_without_signals_counts_when_the_entry_expires(now):
    from automate_core import secrets

    profile(webhook_secrets=["secret://HOOK_A"])
    assert "HOOK_C" not in secrets.signing_secret_names()
    ConnectionProfile.objects.filter(key="cached").update(webhook_secrets=["secret://HOOK_C"])
    now[0] += 4.9
    assert "HOOK_C" not in secrets.signing_secret_names()  # another process's change...
    now[0] += 0.2
    assert "HOOK_C" in secrets.signing_secret_names()  # ...counts within the cache time


def test_signing_cache__inside_a_transaction_the_profiles_are_read():
    profile(webhook_secrets=["secret://HOOK_A"])
    signing_lookups()
    with transaction.atomic():
        ConnectionProfile.objects.filter(key="cached").update(webhook_secrets=["secret://HOOK_D"])
        count, names = signing_lookups()
        assert (count, "HOOK_D" in names) == (1, True)


def test_cache__an_answer_read_while_a_profile_was_saved_is_not_kept(monkeypatch):
    row = profile()
    load = connections._load_connection

    def load_then_saved_elsewhere(key):
        found = load(key)  # what was read before the save below
        row.enabled = False
        row.save()  # clears both caches while this lookup is in flight
        return found

    monkeypatch.setattr(connections, "_load_connection", load_then_saved_elsewhere)
    assert find_connection("cached").enabled  # the answer read before the save...
    monkeypatch.setattr(connections, "_load_connection", load)
    assert not find_connection("cached").enabled  # ...was not kept


# -- The webhook view's connectors: secrets resolved once per connection ----------------


def hook_profile(secret: str = "secret://HOOK_SECRET") -> ConnectionProfile:
    return ConnectionProfile.objects.create(
        key="hooks", connector_key="github", webhook_secrets=[secret]
    )


@pytest.fixture
def expiring_hook(now, monkeypatch) -> ConnectionProfile:
    """The ``hooks`` profile, its secret ``first-value`` in the environment, its entries
    kept 5 s on the :func:`now` clock."""
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    return hook_profile()


def test_webhook_connector__a_new_instance_each_request_from_secrets_resolved_once(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    hook_profile()
    one = connections.webhook_connector("hooks", trace_id="t-1")
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "second-value")  # no signal for this
    two = connections.webhook_connector("hooks", trace_id="t-2")
    assert one is not two  # a check may bind a secret on its instance (using_secret)
    assert (one.ctx.trace_id, two.ctx.trace_id) == ("t-1", "t-2")
    assert one.secrets == two.secrets == ["first-value"]  # resolved once, kept


def test_webhook_connector__a_secret_changed_in_its_backend_counts_when_the_entry_expires(
    expiring_hook, now, monkeypatch
):
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["first-value"]
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "second-value")
    now[0] += 4.9
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["first-value"]
    now[0] += 0.2
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["second-value"]


def test_webhook_connector__saving_the_profile_or_a_secret_row_counts_at_once(monkeypatch):
    from automate_core.models import Secret

    row = Secret(name="HOOK_SECRET")
    row.set_value("stored-value-1")
    row.save()
    profile_row = hook_profile()
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["stored-value-1"]
    row.set_value("stored-value-2")
    row.save()
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["stored-value-2"]
    monkeypatch.setenv("AUTOMATE_SECRET_OTHER_SECRET", "other-value")
    profile_row.webhook_secrets = ["secret://OTHER_SECRET"]
    profile_row.save()
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["other-value"]


def test_webhook_connector__a_secret_that_cannot_be_resolved_is_tried_again(monkeypatch):
    from automate_core.secrets import SecretNotFound

    monkeypatch.delenv("AUTOMATE_SECRET_HOOK_SECRET", raising=False)
    hook_profile()
    with pytest.raises(SecretNotFound):
        connections.webhook_connector("hooks", trace_id="t")
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "fixed-value")  # fixed, no signal
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["fixed-value"]


def test_webhook_connector__inside_a_transaction_secrets_are_resolved_every_time(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    hook_profile()
    connections.webhook_connector("hooks", trace_id="t")
    with transaction.atomic():
        monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "second-value")
        assert connections.webhook_connector("hooks", trace_id="t").secrets == ["second-value"]


def test_webhook_connector__unknown_disabled_or_unregistered_is_none(settings):
    assert connections.webhook_connector("nobody", trace_id="t") is None
    ConnectionProfile.objects.create(key="off", connector_key="github", enabled=False)
    assert connections.webhook_connector("off", trace_id="t") is None
    # A settings entry naming a connector that is not registered (profiles refuse one).
    connectors = {"odd": {"connector": "no_such_connector"}}
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTORS": connectors}
    assert connections.webhook_connector("odd", trace_id="t") is None


def _from_a_loop(key: str) -> tuple[connections.Connection | None, threading.Thread, bool]:
    """Look ``key`` up from an event loop; what it found, the thread that read it and
    whether that thread's database connection was closed once it had."""
    read_by = []
    load = connections._load_connection

    def spied(key: str):
        read_by.append((threading.current_thread(), db.connections[db.DEFAULT_DB_ALIAS]))
        return load(key)

    async def lookup():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(connections, "_load_connection", spied)
            return connections.find_connection(key)

    found = asyncio.run(lookup())
    ((thread, wrapper),) = read_by
    return found, thread, wrapper.connection is None


def test_cache__lookups_from_a_loop_are_read_by_one_thread_of_the_process(now):
    """Each expired entry is read outside the loop, always by the same thread (no thread,
    nor pool, started per read), which keeps no database connection open between reads."""
    profile()
    seen = []
    for _ in range(3):
        found, thread, closed = _from_a_loop("cached")
        assert found is not None and found.connector_key == "my_service"
        seen.append(thread)
        now[0] += 6  # past the entry's 5 s: the next lookup reads again
    assert seen[0] is not threading.current_thread()
    assert seen[1] is seen[0] and seen[2] is seen[0]
    assert seen[0].is_alive()
    if connection.vendor == "postgresql":  # Django keeps SQLite's in-memory test db open
        assert closed


def test_cache__a_forked_process_reads_from_a_loop_too(settings, in_forked_child):
    """A child forked after the parent's reader started has no reader thread: it starts
    its own (the parent's pool would take the read and nobody would ever make it)."""
    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTION_CACHE_SECONDS": 0}
    profile()
    assert _from_a_loop("cached")[0] is not None
    in_forked_child(_reads_from_a_loop_in_child, "read from a loop")


def _reads_from_a_loop_in_child() -> bool:
    # Not the database: a forked child must not share the parent's (SQLite's in-memory
    # test database is the parent's memory).
    async def read() -> threading.Thread:
        return connections._load_off_loop(threading.current_thread)

    return asyncio.run(read()) is not threading.current_thread()


# -- The webhook view's connectors: built per request, the config validated per entry ----


def test_webhook_connector__the_config_is_validated_once_per_entry(monkeypatch):
    from automate_connectors.builtin.github import GitHubConnector

    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    hook_profile()
    validated = []
    schema = GitHubConnector.config_schema()

    class Counted(schema):  # type: ignore[misc, valid-type]
        @classmethod
        def model_validate(cls, *args, **kwargs):
            validated.append(args)
            return super().model_validate(*args, **kwargs)

    monkeypatch.setattr(GitHubConnector, "config_schema", classmethod(lambda cls: Counted))
    one = connections.webhook_connector("hooks", trace_id="t-1")
    two = connections.webhook_connector("hooks", trace_id="t-2")
    assert len(validated) == 1
    assert one.cfg is two.cfg
    assert type(one) is type(two) and one is not two
    assert (one.ctx.trace_id, two.ctx.trace_id) == ("t-1", "t-2")
    assert one.ctx.secrets is two.ctx.secrets  # the resolver, not a value it resolved
    assert one.config == two.config and one.config is not two.config
    one.config["changed"] = True
    one._automate_current_secret = "bound-by-a-check"
    three = connections.webhook_connector("hooks", trace_id="t-3")
    assert "changed" not in three.config
    assert three._automate_current_secret is None
    assert three.secrets == ["first-value"]


def test_webhook_connector__an_edited_profile_config_is_used_on_the_next_request(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    row = hook_profile()
    assert connections.webhook_connector("hooks", trace_id="t").cfg.repository is None
    row.config = {"repository": "acme/edited"}
    row.save()
    connector = connections.webhook_connector("hooks", trace_id="t")
    assert connector.cfg.repository == "acme/edited"
    assert connector.config == {"repository": "acme/edited"}


def test_webhook_connector__an_edit_without_signals_counts_when_the_entry_expires(
    expiring_hook, now
):
    assert connections.webhook_connector("hooks", trace_id="t").cfg.repository is None
    ConnectionProfile.objects.filter(key="hooks").update(config={"repository": "acme/later"})
    now[0] += 4.9
    assert connections.webhook_connector("hooks", trace_id="t").cfg.repository is None
    now[0] += 0.2
    assert connections.webhook_connector("hooks", trace_id="t").cfg.repository == "acme/later"


def test_webhook_connector__a_disabled_profile_is_refused_on_the_next_request(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    row = hook_profile()
    assert connections.webhook_connector("hooks", trace_id="t") is not None
    row.enabled = False
    row.save()
    assert connections.webhook_connector("hooks", trace_id="t") is None


def test_webhook_connector__a_rotated_secret_reaches_the_copies(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_HOOK_SECRET", "first-value")
    row = hook_profile()
    assert connections.webhook_connector("hooks", trace_id="t").secrets == ["first-value"]
    monkeypatch.setenv("AUTOMATE_SECRET_NEXT_SECRET", "next-value")
    row.webhook_secrets = ["secret://NEXT_SECRET", "secret://HOOK_SECRET"]
    row.save()
    assert connections.webhook_connector("hooks", trace_id="t").secrets == [
        "next-value",
        "first-value",
    ]


def test_webhook_connector__a_class_with_its_own_init_is_built_by_it_every_time(
    settings, monkeypatch
):
    """No declaration needed: each request's instance is made by the class's __init__
    (whatever it sets), only the config's validation is shared by the entry."""
    from automate_connectors.builtin.github import GitHubConnector

    built = []

    class Counting(GitHubConnector):
        key = "counting_github"

        def __init__(self, config=None, *, ctx):
            super().__init__(config, ctx=ctx)
            self.own = object()
            built.append(ctx.trace_id)

    one, two = _two_requests(settings, Counting, ("t-1", "t-2"))
    assert built == ["t-1", "t-1", "t-2"]  # once more when the entry was resolved
    assert one.own is not two.own
    assert (one.ctx.trace_id, two.ctx.trace_id) == ("t-1", "t-2")
    assert one.secrets == two.secrets == ["x"]
    assert one.cfg is two.cfg


def test_webhook_connector__a_config_changed_by_an_init_is_validated_as_it_is(
    settings, monkeypatch
):
    from automate_connectors.builtin.github import GitHubConnector

    class Rewriting(GitHubConnector):
        key = "rewriting_github"

        def __init__(self, config=None, *, ctx):
            super().__init__({**(config or {}), "repository": ctx.trace_id}, ctx=ctx)

    one, two = _two_requests(settings, Rewriting, ("acme/one", "acme/two"))
    assert (one.cfg.repository, two.cfg.repository) == ("acme/one", "acme/two")


def test_validate_config__outside_validated_it_validates_every_time():
    from automate_connectors.base import recorded_validations, validate_config, validated
    from automate_connectors.builtin.github import GitHubConnector

    config = {"repository": "acme/x"}
    first, made = recorded_validations(lambda: validate_config(GitHubConnector, config))
    assert made == ((GitHubConnector, config, first),)
    assert validate_config(GitHubConnector, config) is not first
    with validated(made):
        assert validate_config(GitHubConnector, dict(config)) is first
        assert validate_config(GitHubConnector, {"repository": "acme/y"}) is not first
    assert validate_config(GitHubConnector, config) is not first


def _two_requests(settings, cls, trace_ids):
    """The connectors two webhook requests get from a connection of ``cls`` (registered
    for the call), one per trace id."""
    from automate_connectors.registry import connectors

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "CONNECTORS": {"hook": {"connector": cls.key, "secrets": ["x"]}},
    }
    connectors.register(cls)
    try:
        return [connections.webhook_connector("hook", trace_id=t) for t in trace_ids]
    finally:
        connectors.unregister(cls.key)
