"""Jinja2 templates in step configs, sandboxed.

Only the workflow's author writes template source; events only ever fill the context. So:

* the environment is Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
  :class:`~jinja2.StrictUndefined`: no attribute starting with ``_``, no mutation of the
  context, and a misspelt name is an error rather than an empty string;
* :func:`validate_template` rejects, before a workflow is saved, syntax errors, names outside
  the context (``event``, ``steps``, ``workflow``, ``trace_id``) and any access to an
  underscore attribute, so ``{{ ''.__class__.__mro__ }}`` in a config never runs at all;
* a value that came from a payload is data: rendered output is never rendered again, so
  ``{{ '{{' }}`` text in an event stays text;
* a string that is exactly one expression, ``"{{ event.payload }}"``, keeps its native type
  (a dict stays a dict); anything else renders to a string, capped at
  ``AUTOMATE["TEMPLATE_MAX_OUTPUT"]`` characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from automate.conf import settings as app_settings
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

#: Names a template may read; everything else is an error at validation time.
CONTEXT_NAMES = frozenset({"event", "steps", "workflow", "trace_id"})

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateLimitExceeded(AutomateError):
    """A template's output is larger than AUTOMATE["TEMPLATE_MAX_OUTPUT"]."""


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """``event.payload.items`` is the payload's ``items`` key, not ``dict.items``.

    Payloads are JSON objects whose keys often shadow dict methods (items, keys, values,
    get...); for a mapping that holds the key, the key wins.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment every step template is compiled in."""
    env = _DataFirstEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def is_template(value: Any) -> bool:
    """True for a string holding Jinja syntax (plain strings need no rendering)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


def _single_expression(source: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    expr = match.group("expr")
    # "{{ a }} and {{ b }}" also matches the pattern; it is not one expression.
    if "{{" in expr or "}}" in expr or "{%" in source:
        return None
    return expr


# -- Validation (before anything is saved) ------------------------------------------------


def validate_template(
    source: str, *, where: str = "template", names: frozenset[str] = CONTEXT_NAMES
) -> None:
    """Raise INVALID_ARGUMENT, naming ``where``, unless ``source`` is a safe template.

    ``names`` are the names it may read: :data:`CONTEXT_NAMES`, plus ``item`` and ``loop``
    inside a ``for_each``, ``failure`` in ``on_failure`` steps.
    """
    env = environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise invalid_argument(where, f"{where}: template syntax error: {exc.message}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter)):
        name = _accessed_name(node)
        if name is not None and name.startswith("_"):
            raise invalid_argument(
                where,
                f"{where}: templates may not access {name!r} (names starting with '_' are "
                "blocked by the sandbox)",
            )
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    unknown = meta.find_undeclared_variables(tree) - names - assigned
    unknown -= set(env.globals)
    if unknown:
        raise invalid_argument(
            where,
            f"{where}: unknown name(s) {', '.join(sorted(unknown))}; a template can read "
            f"{', '.join(sorted(names))}",
        )


def _accessed_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    if isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        arg = node.args[0]
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return arg.value
    return None


def validate_value(
    value: Any, *, where: str = "config", names: frozenset[str] = CONTEXT_NAMES
) -> None:
    """Validate every template string inside JSON-like ``value``."""
    if isinstance(value, str):
        if is_template(value):
            validate_template(value, where=where, names=names)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            validate_value(item, where=f"{where}.{key}", names=names)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            validate_value(item, where=f"{where}[{index}]", names=names)


# -- Rendering ----------------------------------------------------------------------------


def render_value(value: Any, context: Mapping[str, Any], *, where: str = "config") -> Any:
    """Render every template string inside ``value``; other values are returned as they are.

    Errors are permanent INVALID_ARGUMENT errors naming the path (a retry renders the same).
    """
    if isinstance(value, str):
        return render_string(value, context, where=where) if is_template(value) else value
    if isinstance(value, Mapping):
        return {k: render_value(v, context, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def render_string(source: str, context: Mapping[str, Any], *, where: str = "template") -> Any:
    """Render one template; a single expression keeps its native type."""
    env = environment()
    limit = app_settings.TEMPLATE_MAX_OUTPUT
    expr = _single_expression(source)
    try:
        if expr is not None:
            result = env.compile_expression(expr, undefined_to_none=False)(**context)
            if isinstance(result, StrictUndefined):
                str(result)  # raises UndefinedError naming the missing variable
            if callable(result):
                raise invalid_argument(where, f"{where}: the expression is a method, not a value")
            _check_size(result, limit, where)
            return result
        chunks: list[str] = []
        size = 0
        for chunk in env.from_string(source).generate(**context):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, where)
            chunks.append(chunk)
        return "".join(chunks)
    except AutomateError:
        raise
    except SecurityError as exc:
        raise invalid_argument(where, f"{where}: blocked by the template sandbox: {exc}") from None
    except TemplateError as exc:
        raise invalid_argument(where, f"{where}: {exc.message or type(exc).__name__}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise invalid_argument(where, f"{where}: {type(exc).__name__}: {exc}") from None


def _check_size(result: Any, limit: int, where: str) -> None:
    if isinstance(result, str):
        size = len(result)
    elif isinstance(result, int | float | bool) or result is None:
        return
    else:
        size = len(json.dumps(result, default=str))
    if size > limit:
        raise _too_large(limit, where)


def _too_large(limit: int, where: str) -> AutomateError:
    return TemplateLimitExceeded(
        ErrorCodes.INVALID_ARGUMENT,
        f"{where}: rendered output exceeds {limit} characters",
        retryable=False,
        details={"field": where, "limit": limit},
    )
