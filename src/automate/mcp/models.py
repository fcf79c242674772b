"""MCPServer and MCPTool: the servers users configure in the admin and the tools they list.

Re-exported by :mod:`automate.models` (``from automate.models import MCPServer``, as the
spec writes it). ``key`` is what a workflow step's ``server`` names; it is derived from
the name ("My Tools" -> "my_tools") when left empty. The API key is stored encrypted
(``fernet:...``) or as a ``secret://NAME`` reference, and is never shown back.

A server with ``transport="stdio"`` is a local program declared in
``AUTOMATE["MCP_STDIO_SERVERS"]`` (see :mod:`automate.mcp.stdio`): its row is created by
:func:`ensure_stdio_server` from the settings entry of the same key and holds no URL,
credential or command.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from automate.mcp import stdio
from automate.mcp.endpoint import Endpoint
from automate.mcp.listing import schema_hash as schema_hash  # importable from here too
from automate_core import secrets
from automate_core.crypto import seal, unseal
from automate_core.http import is_credential_header
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.secrets import is_reference, parse_reference

if TYPE_CHECKING:
    from automate.mcp.sync import SyncResult


def _host(url: str) -> str:
    """The URL's host name ("" when it has none: the SSRF check refuses it later)."""
    import httpx

    try:
        return str(httpx.URL(url).host)
    except (httpx.InvalidURL, TypeError):
        return ""


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")

mcp_key_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_]{0,99}$",
    _("Use lower-case letters, digits and '_' (workflow steps name the server by it)."),
)


def derive_key(name: str) -> str:
    """ "My Tools" -> "my_tools": the name as a slug with underscores."""
    return slugify(name).replace("-", "_").strip("_")[:100]


class MCPServer(models.Model):
    """An MCP server: remote over streamable HTTP (or SSE for older servers), or a local
    program over stdio declared in settings (:mod:`automate.mcp.stdio`)."""

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable_http", _("Streamable HTTP")
        SSE = "sse", _("SSE (older servers)")
        STDIO = "stdio", _("stdio (declared in settings)")

    name = models.CharField(_("name"), max_length=200)
    key = models.CharField(
        _("key"),
        max_length=100,
        unique=True,
        blank=True,
        validators=[mcp_key_validator],
        help_text=_("Workflow steps name the server by this; derived from the name if empty."),
    )
    url = models.CharField(
        _("URL"),
        max_length=2000,
        blank=True,
        help_text=_("e.g. https://tools.example.com/mcp (empty for a stdio server)"),
    )
    transport = models.CharField(
        _("transport"), max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP
    )
    api_key = models.CharField(
        _("API key"),
        max_length=2000,
        blank=True,
        default="",
        help_text=_("Sent as 'Authorization: Bearer <key>'. Stored encrypted or as secret://NAME."),
    )
    headers = models.JSONField(
        _("extra headers"),
        default=dict,
        blank=True,
        help_text=_(
            'Sent with every request, e.g. {"X-Tenant": "acme"}; values may be secret://NAME.'
        ),
    )
    timeout = models.FloatField(
        _("timeout (seconds)"), default=30.0, validators=[MinValueValidator(0.1)]
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    last_synced_at = models.DateTimeField(
        _("last synced at"), null=True, blank=True, editable=False
    )
    last_error = models.TextField(_("last error"), blank=True, default="", editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("MCP server")
        verbose_name_plural = _("MCP servers")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.key:
            self.key = derive_key(self.name)
        if self.api_key:
            self.api_key = seal(self.api_key)
        self.full_clean(exclude=self._clean_exclusions(kwargs))
        super().save(*args, **kwargs)

    @staticmethod
    def _clean_exclusions(kwargs: dict[str, Any]) -> list[str]:
        fields = kwargs.get("update_fields")
        if fields is None:
            return []
        return [f.name for f in MCPServer._meta.fields if f.name not in set(fields)]

    def clean(self) -> None:
        if not self.key:  # also here: the admin form validates before save() runs
            self.key = derive_key(self.name)
        if not self.key:
            raise ValidationError({"name": _("The name must contain a letter or digit.")})
        if self.transport == self.Transport.STDIO:
            self._clean_stdio()
            return
        if not re.match(r"^https?://[^/\s]+", self.url or "", flags=re.IGNORECASE):
            raise ValidationError({"url": _("Use an http:// or https:// URL.")})
        if is_reference(self.api_key):
            try:
                parse_reference(self.api_key)
            except ValueError as exc:
                raise ValidationError({"api_key": str(exc)}) from None
        if not isinstance(self.headers, dict):
            raise ValidationError({"headers": _("Extra headers must be a JSON object.")})
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name) or not isinstance(value, str) or "\n" in value:
                raise ValidationError(
                    {
                        "headers": _("Header %(name)r needs a valid name and a string value.")
                        % {"name": name}
                    }
                )
            if name.lower() == "authorization":
                raise ValidationError({"headers": _("Put the credential in the API key field.")})
            if is_credential_header(name) and not is_reference(value):
                # A literal would be stored and shown in clear: refer to a secret instead.
                raise ValidationError(
                    {
                        "headers": _(
                            "Header %(name)r looks like a credential: give its value as "
                            "secret://NAME (or use the API key field), never in clear."
                        )
                        % {"name": name}
                    }
                )

    def _clean_stdio(self) -> None:
        """A stdio row only names a settings entry: it has nothing to reach or send."""
        if self.url or self.api_key or self.headers:
            raise ValidationError(
                _(
                    "A stdio MCP server has no URL, API key or headers: its command and "
                    'environment live in AUTOMATE["MCP_STDIO_SERVERS"].'
                )
            )

    @property
    def is_stdio(self) -> bool:
        return self.transport == self.Transport.STDIO

    # -- Credentials ---------------------------------------------------------------------

    def describe_api_key(self) -> str:
        """A safe label: a reference as written, an encrypted value masked."""
        if not self.api_key:
            return str(_("not set"))
        if is_reference(self.api_key):
            return self.api_key
        return str(_("set (encrypted)"))

    def endpoint(self, *, timeout: float | None = None) -> Endpoint:
        """Resolve the URL, headers and credentials (may query the database)."""
        if self.is_stdio:
            return Endpoint(
                key=self.key,
                url="",
                headers={},
                timeout=float(timeout if timeout is not None else stdio.entry_timeout(self.key)),
                transport=self.transport,
                stdio=stdio.command_for(self.key),
                start_timeout=stdio.start_timeout(),
            )
        headers = {"User-Agent": "django-automate-mcp"}
        host = _host(self.url)
        for name, value in (self.headers or {}).items():
            if is_reference(value):  # bound to this server's host, or to its grant
                secrets.check_grant(value, use="mcp", host=host, implicit_hosts=[host])
            headers[name] = str(secrets.resolve(value))
        if self.api_key:
            if is_reference(self.api_key):
                secrets.check_grant(self.api_key, use="mcp", host=host, implicit_hosts=[host])
            key = str(unseal(self.api_key))
            headers["Authorization"] = key if " " in key.strip() else f"Bearer {key}"
        return Endpoint(
            key=self.key,
            url=self.url,
            headers=headers,
            timeout=float(timeout if timeout is not None else self.timeout),
            transport=self.transport,
        )

    # -- Tools ---------------------------------------------------------------------------

    def sync_tools(self) -> SyncResult:
        """Fetch every tool the server lists and update :class:`MCPTool` rows.

        Raises :class:`~automate_core.providers.errors.AutomateError` when the server
        cannot be listed; the cached tools are kept and the error is saved on
        ``last_error``.
        """
        # Here, not at the top: sync drives the MCP SDK, the optional "mcp" extra, which
        # the models never need. It receives this row and imports nothing from here.
        from automate.mcp.sync import sync_tools

        return sync_tools(self)


class MCPTool(models.Model):
    """A tool listed by an :class:`MCPServer`; ``enabled`` is False once it disappears."""

    server = models.ForeignKey(
        MCPServer, on_delete=models.CASCADE, related_name="tools", verbose_name=_("server")
    )
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True, default="")
    input_schema = models.JSONField(_("input schema"), default=dict, blank=True)
    schema_hash = models.CharField(_("schema hash"), max_length=64, blank=True, default="")
    annotations = models.JSONField(
        _("annotations"),
        default=dict,
        blank=True,
        help_text=_("The server's hints, e.g. readOnlyHint, idempotentHint, destructiveHint."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    discovered_at = models.DateTimeField(_("discovered at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("MCP tool")
        verbose_name_plural = _("MCP tools")
        ordering = ["server", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="automate_mcptool_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.server.key}.{self.name}"

    @property
    def is_idempotent(self) -> bool:
        """Whether the server says a repeated call has no further effect (a read-only or
        idempotent tool), so the engine may retry it after an unknown outcome. These are
        hints: a tool that says nothing is treated as non-idempotent."""
        hints = self.annotations or {}
        return bool(hints.get("readOnlyHint") or hints.get("idempotentHint"))


# -- The rows of the stdio servers declared in settings -------------------------------------


def ensure_stdio_server(key: str) -> MCPServer:
    """Create or update the ``MCPServer`` row of the settings entry ``key``.

    ``name`` and ``timeout`` follow the entry; ``enabled`` is left as the admin set it
    (a new row is enabled). Fails with CONFIGURATION when the entry is missing or
    malformed, or when an HTTP server already uses the key.
    """
    entry = stdio.declared_entry(key)
    name = str(entry.get("name", key))
    timeout = float(entry.get("timeout", stdio.DEFAULT_TIMEOUT))
    server = MCPServer.objects.filter(key=key).first()
    if server is None:
        server = MCPServer(key=key, transport=stdio.STDIO, enabled=True)
    elif server.transport != stdio.STDIO:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"{stdio.SETTING}[{key!r}] clashes with the {server.transport} MCP server of the "
            "same key in the database; rename one of them",
            provider=key,
            retryable=False,
        )
    elif (server.name, server.timeout) == (name, timeout):
        return server
    server.name, server.timeout = name, timeout
    try:
        server.save()
    except ValidationError as exc:  # e.g. a timeout under the model's 0.1 s minimum
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"{stdio.SETTING}[{key!r}] cannot be stored: {'; '.join(exc.messages)}",
            provider=key,
            retryable=False,
        ) from None
    return server


def ensure_stdio_servers() -> list[MCPServer]:
    """:func:`ensure_stdio_server` for every entry of the setting, in key order."""
    return [ensure_stdio_server(key) for key in sorted(stdio.entries())]
