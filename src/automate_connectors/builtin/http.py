"""A generic outbound HTTP request, through the SSRF-safe client.

For the services no connector covers: ``get``/``post``/``put``/``patch``/``delete`` (and
``request`` with the method in the input) send one request with
:func:`automate_core.http.ssrf_safe_request`, so private, loopback and metadata addresses,
odd ports and oversized bodies are refused exactly as for every other outbound call.

``idempotent`` is declared per method, as HTTP defines it: a retried run may repeat a
``GET``, ``PUT`` or ``DELETE`` but never a ``POST``, ``PATCH`` or a ``request`` whose
method is only known at run time.

Credentials are a ``secret://NAME`` reference (``credentials_ref``) resolved through the
connector's context when the request is made; they are sent only to ``base_url``'s host
(its implicit grant) or to the hosts ``AUTOMATE["SECRET_GRANTS"]`` names for the secret
(use ``connection``), so a profile without ``base_url`` sends its credential nowhere
until a grant names the hosts. Credential headers (a name containing key, token, secret,
auth, signature, password, session or cookie) are refused in the profile's ``headers``
and in an action's input: neither a profile row nor a workflow definition may carry a
secret in clear.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from automate_connectors.base import ActionSpec, Connector, response_body
from automate_connectors.builtin import _api
from automate_core import secrets
from automate_core.http import (
    DEFAULT_MAX_SIZE,
    is_credential_header,
    redact_headers,
    ssrf_safe_request,
)
from automate_core.providers.errors import invalid_argument

__all__ = ["HttpConfig", "HttpConnector"]

#: method -> may a retried run repeat it (RFC 9110's idempotent methods).
METHODS: dict[str, bool] = {
    "get": True,
    "post": False,
    "put": True,
    "patch": False,
    "delete": True,
}
#: The outbound purpose (allow-list) and the use a credential is granted for.
PURPOSE = "connection"
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
_HEADER_VALUE = {"type": "string", "pattern": r"^[\x20-\x7e]*$", "maxLength": 8192}
_HEADERS = {
    "type": "object",
    "propertyNames": {"pattern": _HEADER_NAME},
    "additionalProperties": _HEADER_VALUE,
    "maxProperties": 50,
}


class HttpConfig(BaseModel):
    """Everything is optional: with no ``base_url`` each input gives an absolute URL.

    ``base_url``: relative input URLs (``/v1/items``) join it, and absolute ones must keep
    its origin. ``credentials_ref``: ``secret://NAME``; its value is sent as
    ``Authorization: Bearer VALUE``, or as is when it has a scheme (``Basic ...``).
    ``headers``: sent with every request. ``timeout``: a total deadline in seconds.
    ``max_size``: the largest response body accepted. ``rate_limit``: e.g. ``"10/s"``.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    credentials_ref: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0, le=300)
    max_size: int = Field(default=DEFAULT_MAX_SIZE, ge=1, le=100 * 1024 * 1024)
    follow_redirects: bool = True
    rate_limit: str | None = None

    _credentials = field_validator("credentials_ref", mode="before")(_api.check_secret_reference)
    _rate = field_validator("rate_limit")(_api.check_rate)
    _base = field_validator("base_url")(
        _api.check_service_url("https://api.example.com/v1", allow_http=True)
    )

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if is_credential_header(name):
                raise ValueError(
                    f"{name} looks like a credential header: it must come from "
                    "credentials_ref, not be written here in clear"
                )
        return value


class HttpConnector(Connector):
    """One HTTP request to any public address, with the SSRF rules applied."""

    key = "http"
    display_name = "HTTP request"
    cfg: HttpConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return HttpConfig

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        specs = [
            ActionSpec(
                name=method,
                description=f"Send a {method.upper()} request.",
                input_schema=_input_schema(with_body=method != "get"),
                output_schema=_OUTPUT,
                idempotent=idempotent,
            )
            for method, idempotent in METHODS.items()
        ]
        schema = _input_schema(with_body=True)
        schema["properties"]["method"] = {"enum": [m.upper() for m in METHODS]}
        schema["required"] = ["method", "url"]
        specs.append(
            ActionSpec(
                name="request",
                description="Send a request whose method is in the input (never repeated).",
                input_schema=schema,
                output_schema=_OUTPUT,
                idempotent=False,
            )
        )
        return specs

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        method = input_data["method"] if action == "request" else action.upper()
        url = self._target(input_data["url"])
        headers = dict(self.cfg.headers)
        for name, value in (input_data.get("headers") or {}).items():
            if is_credential_header(name):
                raise invalid_argument(
                    None,
                    f"the {name} header must come from the connector's credentials_ref",
                    provider=self.key,
                )
            headers[name] = value
        headers.update(self._credentials(url))
        _api.throttle(self.key, self.cfg.rate_limit, self.cfg.base_url, self.cfg.credentials_ref)
        response = ssrf_safe_request(
            method,
            url,
            headers=headers,
            params=input_data.get("params"),
            json=input_data.get("json"),
            data=input_data.get("data"),
            timeout=self.cfg.timeout,
            max_size=self.cfg.max_size,
            allow_redirects=self.cfg.follow_redirects,
            purpose=PURPOSE,
        )
        if response.status_code >= 400 and input_data.get("raise_for_status", True):
            response.raise_for_status()
        return _result(response)

    def normalize_error(self, exc: Exception) -> Exception:
        return _api.service_error(exc, provider=self.key)

    def _target(self, url: str) -> str:
        """The absolute URL: a path joins ``base_url``; an absolute URL keeps its origin."""
        base = self.cfg.base_url
        if url.startswith("/"):
            if not base:
                raise invalid_argument(
                    None,
                    f"{url!r} is a path but the connector has no base_url: give an absolute URL",
                    provider=self.key,
                )
            return base + url
        if not url.startswith(("https://", "http://")):
            raise invalid_argument(
                None,
                f"url must be an absolute http(s) URL or a path starting with '/', not {url!r}",
                provider=self.key,
            )
        if base and _origin(url) != _origin(base):
            raise invalid_argument(
                None,
                f"url {url!r} leaves the connector's base_url origin {_origin(base)}; use a "
                "connector without base_url for arbitrary hosts",
                provider=self.key,
            )
        return url

    def _credentials(self, url: str) -> dict[str, str]:
        """The credential for ``url``, if its grant (or ``base_url``'s host) allows it."""
        if not self.cfg.credentials_ref:
            return {}
        base_host = httpx.URL(self.cfg.base_url).host if self.cfg.base_url else ""
        # The profile's references are resolved before the connector is built: the grant
        # is found from the value (automate_core.secrets remembers which secret it is).
        value = str(self.ctx.resolve_secret(self.cfg.credentials_ref))
        secrets.check_value_grant(
            value,
            use=PURPOSE,
            host=httpx.URL(url).host,
            implicit_hosts=[base_host] if base_host else (),
        )
        value = value.strip()
        return {"Authorization": value if " " in value else f"Bearer {value}"}


_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "headers": {"type": "object"},
        "json": {},
        "text": {"type": ["string", "null"]},
    },
    "required": ["status", "headers"],
}


def _input_schema(*, with_body: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "url": {"type": "string", "minLength": 1, "maxLength": 4096},
        "headers": _HEADERS,
        "params": {
            "type": "object",
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
        },
        "raise_for_status": {"type": "boolean"},
    }
    if with_body:
        properties["json"] = {}
        # Form fields (application/x-www-form-urlencoded).
        properties["data"] = {
            "type": "object",
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
        }
    return {
        "type": "object",
        "properties": properties,
        "required": ["url"],
        "additionalProperties": False,
        **({"not": {"required": ["json", "data"]}} if with_body else {}),
    }


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return ""
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}"


def _result(response: httpx.Response) -> dict[str, Any]:
    """Status, headers and the body: parsed as ``json`` when it is JSON, else as ``text``."""
    result: dict[str, Any] = {
        "status": response.status_code,
        "headers": redact_headers(response.headers),
        "json": None,
        "text": None,
    }
    if response.content:
        result.update(response_body(response))
    return result
