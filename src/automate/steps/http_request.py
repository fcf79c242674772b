"""``http_request``: call an HTTP endpoint through the SSRF-safe client.

    {"name": "Notify", "type": "http_request", "config": {
        "method": "POST", "url": "https://hooks.example.com/x",
        "json": {"order": "{{ event.payload.id }}"},
        "credentials_ref": "secret://HOOK_TOKEN"}}

Every request goes through :func:`automate_core.http.ssrf_safe_request` with the purpose
``http_request``, so a templated URL cannot reach private networks (only
``AUTOMATE["HTTP_ALLOW_FOR"]["http_request"]`` and the global allow-lists open any). GET,
HEAD, OPTIONS, PUT and DELETE count as idempotent; set ``"idempotent"`` to say otherwise
for a given endpoint.

``credentials_ref`` names a secret the workflow author may use only where the operator
granted it: ``AUTOMATE["SECRET_GRANTS"]["HOOK_TOKEN"] = {"hosts": ["hooks.example.com"],
"uses": ["http_request"]}``. Saving a workflow refuses a reference with no such grant, a
templated reference, a webhook signing secret, and a literal URL whose host the grant
does not name; a templated URL is checked when it is rendered, before any connection.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate_connectors.base import normalize_http_error, response_body
from automate_core import secrets
from automate_core.http import ssrf_safe_request
from automate_core.providers.errors import AutomateError, invalid_argument
from automate_core.secrets import is_reference

#: The outbound purpose (allow-list) and the use a credential must be granted for.
PURPOSE = "http_request"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Response bodies kept as the step's output (the rest is cut, and ``truncated`` says so).
MAX_KEPT_TEXT = 64 * 1024


class HttpRequestConfig(StrictConfig):
    method: Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] | str = Field(default_factory=dict)
    params: dict[str, Any] | str = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    data: dict[str, Any] | str | None = None
    credentials_ref: str | None = None
    idempotent: bool | None = None
    max_size: int | None = Field(default=None, gt=0)
    allow_redirects: bool = True


class HttpRequestStep(StepExecutor[HttpRequestConfig]):
    key = "http_request"
    display_name = "HTTP request"
    config_model = HttpRequestConfig

    @classmethod
    def check(cls, config: HttpRequestConfig, *, where: str = "config") -> None:
        if config.credentials_ref is not None and not is_reference(config.credentials_ref):
            raise invalid_argument(
                f"{where}.credentials_ref",
                f"{where}.credentials_ref must be a secret://NAME reference, never the secret",
            )
        if config.json_body is not None and config.data is not None:
            raise invalid_argument(f"{where}.data", f"{where}: give json or data, not both")
        if config.credentials_ref is not None:
            _check_grant(config, f"{where}.credentials_ref")

    @classmethod
    def is_idempotent(cls, config: HttpRequestConfig) -> bool:
        if config.idempotent is not None:
            return config.idempotent
        return config.method in IDEMPOTENT_METHODS

    def execute(self, config: HttpRequestConfig, ctx: StepContext) -> dict[str, Any]:
        for name in ("headers", "params"):
            if not isinstance(getattr(config, name), dict):
                raise invalid_argument(f"config.{name}", f"config.{name} must render to an object")
        kwargs: dict[str, Any] = {
            "credentials_ref": config.credentials_ref,
            "timeout": ctx.timeout,
            "headers": config.headers or None,
            "params": config.params or None,
            "json": config.json_body,
            "data": config.data,
            "allow_redirects": config.allow_redirects,
            "purpose": PURPOSE,
        }
        if config.max_size is not None:
            kwargs["max_size"] = config.max_size
        try:
            response = ssrf_safe_request(config.method, config.url, **kwargs)
        except AutomateError:
            raise
        except Exception as exc:
            raise normalize_http_error(exc, provider="http_request") from exc
        if response.status_code >= 400:
            raise normalize_http_error(_StatusError(response), provider="http_request")
        return _output(response)


def _check_grant(config: HttpRequestConfig, field: str) -> None:
    """What can be known at save time about ``credentials_ref`` (run time checks the rest)."""
    reference = str(config.credentials_ref)
    if _templated(reference):
        raise invalid_argument(field, f"{field} cannot be templated: name one granted secret")
    try:
        name = secrets.parse_reference(reference)
    except ValueError as exc:
        raise invalid_argument(field, f"{field}: {exc}") from None
    try:
        if _templated(config.url):  # the host is known only at run time
            secrets.check_use(reference, use=PURPOSE)
        else:
            secrets.check_grant(reference, use=PURPOSE, host=_host(config.url, field))
    except secrets.SecretNotGranted as exc:
        hint = (
            ""
            if name in secrets.signing_secret_names()
            else f'. Grant it in settings: AUTOMATE["SECRET_GRANTS"][{name!r}] = '
            f'{{"hosts": [...], "uses": ["{PURPOSE}"]}}'
        )
        raise invalid_argument(field, f"{field}: {exc.message}{hint}") from None


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _host(url: str, field: str) -> str:
    import httpx

    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError):
        raise invalid_argument(field, f"{field}: the url cannot be parsed") from None


class _StatusError(Exception):
    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _output(response: Any) -> dict[str, Any]:
    return {
        "status_code": response.status_code,
        "headers": {"content-type": response.headers.get("content-type", "")},
        **response_body(response, max_text=MAX_KEPT_TEXT),
    }
