"""``connector_action``: perform an action of a configured connection.

    {"name": "Open ticket", "type": "connector_action", "config": {
        "profile": "jira",                      # a connection key (profile or settings)
        "action": "create_issue",               # must be one of the connector's actions
        "input": {"summary": "{{ event.payload.title }}"}}}

The action's ``ActionSpec.idempotent`` decides whether a crash mid-call may repeat it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from automate.connections import build_connector, check_no_signing_secret, find_connection
from automate.steps.base import StepContext, StepExecutor, StrictConfig, run_with_timeout
from automate.templating import is_template
from automate_connectors.base import validate_action_input
from automate_connectors.registry import NotRegistered, get_connector
from automate_connectors.specs import ActionSpec
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument


class ConnectorActionConfig(StrictConfig):
    profile: str = Field(min_length=1)
    action: str = Field(min_length=1)
    input: dict[str, Any] | str = Field(default_factory=dict)


class ConnectorActionStep(StepExecutor[ConnectorActionConfig]):
    key = "connector_action"
    display_name = "Connector action"
    config_model = ConnectorActionConfig

    @classmethod
    def check(cls, config: ConnectorActionConfig, *, where: str = "config") -> None:
        connector_cls, spec = _resolve(config, where=where)
        data = config.input
        if isinstance(data, str):
            if not is_template(data):
                raise invalid_argument(
                    f"{where}.input", f"{where}.input must be an object or a template"
                )
            return
        if not _contains_template(data):
            try:
                validate_action_input(connector_cls, spec, data)
            except AutomateError as exc:
                raise invalid_argument(f"{where}.input", f"{where}.input: {exc.message}") from None
            return
        # Templated values are checked once rendered; missing required keys are known now.
        missing = [k for k in spec.input_schema.get("required", []) if k not in data]
        if missing:
            raise invalid_argument(
                f"{where}.input",
                f"{where}.input is missing required field(s) {', '.join(missing)} of "
                f"{connector_cls.key}.{spec.name}",
            )

    @classmethod
    def is_idempotent(cls, config: ConnectorActionConfig) -> bool:
        try:
            return _resolve(config, where="config")[1].idempotent
        except AutomateError:
            return False

    def execute(self, config: ConnectorActionConfig, ctx: StepContext) -> Any:
        if not isinstance(config.input, dict):
            raise invalid_argument(
                "config.input",
                f"config.input rendered to {type(config.input).__name__}, expected an object",
            )
        connection = find_connection(config.profile)
        if connection is None or not connection.enabled:
            raise AutomateError(
                ErrorCodes.CONFIGURATION,
                f"connection {config.profile!r} does not exist or is disabled",
                retryable=False,
                details={"field": "config.profile"},
            )
        check_no_signing_secret(connection)
        connector = build_connector(connection, ctx=ctx.provider_ctx)
        return run_with_timeout(
            lambda: connector.execute_action(config.action, _rendered_input(config.input)),
            ctx.timeout,
            what=f"{config.profile}.{config.action}",
        )


def _resolve(config: ConnectorActionConfig, *, where: str) -> tuple[Any, ActionSpec]:
    connection = find_connection(config.profile)
    if connection is None:
        raise invalid_argument(
            f"{where}.profile",
            f"{where}.profile: no connection profile or AUTOMATE['CONNECTORS'] entry "
            f"named {config.profile!r}",
        )
    try:
        connector_cls = get_connector(connection.connector_key)
    except NotRegistered as exc:
        raise invalid_argument(f"{where}.profile", f"{where}.profile: {exc}") from None
    try:
        spec = connector_cls.get_action(config.action)
    except AutomateError as exc:
        raise invalid_argument(f"{where}.action", f"{where}.action: {exc.message}") from None
    return connector_cls, spec


def _contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(_contains_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_template(v) for v in value)
    return False


def _rendered_input(data: dict[str, Any] | str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid_argument("config.input", "config.input must render to an object")
    return dict(data)
