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
  ``AUTOMATE["TEMPLATE_MAX_OUTPUT"]`` characters;
* rendering runs under a budget checked while it runs (:mod:`automate.template_budget`): a
  deadline (``AUTOMATE["TEMPLATE_TIMEOUT_SECONDS"]``, or the step's ``timeout_seconds`` when
  shorter) and the same size limit for every value a template builds; an expression that
  reads no data and would break that budget (``9 ** (9 ** 9)``, ``'x' * 400000000``) is
  refused when the workflow is saved;
* whatever goes wrong while rendering - a sandbox refusal, a budget, ``RecursionError``,
  ``MemoryError``, any exception - is a non-retryable ``invalid_argument``
  :class:`~automate_core.providers.errors.AutomateError` naming the field, so it fails
  the step that owns the template, never the event's other workflows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import SecurityError

from automate import template_budget
from automate.conf import settings as app_settings
from automate.template_budget import BoundedEnvironment, TemplateLimitExceeded
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

__all__ = [
    "CONTEXT_NAMES",
    "TemplateLimitExceeded",
    "environment",
    "is_template",
    "render_string",
    "render_value",
    "validate_template",
    "validate_value",
]

#: Names a template may read; everything else is an error at validation time.
CONTEXT_NAMES = frozenset({"event", "steps", "workflow", "trace_id"})

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class _DataFirstEnvironment(BoundedEnvironment):
    """``event.payload.items`` is the payload's ``items`` key, not ``dict.items``.

    Payloads are JSON objects whose keys often shadow dict methods (items, keys, values,
    get...); for a mapping that holds the key, the key wins.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def environment() -> BoundedEnvironment:
    """The one sandboxed environment every step template is compiled in."""
    env = _DataFirstEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["tojson"] = template_budget.guard_filter("tojson", _tojson)
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

    Refused: syntax errors, a template nested too deeply to parse, names outside
    ``names``, an underscore name wherever it can be seen without data (a literal, a
    constant expression such as ``'_' ~ '_class__'``, or a variable set to one), and an
    expression that reads no data and breaks the rendering budget (it is evaluated here,
    under that budget).
    """
    try:
        _validate_template(source, where, names)
    except RecursionError:
        raise invalid_argument(where, f"{where}: the template nests too deeply") from None


def _validate_template(source: str, where: str, names: frozenset[str]) -> None:
    env = environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise invalid_argument(where, f"{where}: template syntax error: {exc.message}") from None
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    unknown = meta.find_undeclared_variables(tree) - names - assigned
    unknown -= set(env.globals)
    static = _static_expressions(tree, assigned)
    with _budget(where, None):
        constants = _constant_names(tree, assigned)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter)):
            for name in _accessed_names(node, constants, assigned):
                if name.startswith("_") or "._" in name:
                    raise invalid_argument(
                        where,
                        f"{where}: templates may not access {name!r} (names starting with "
                        "'_' are blocked by the sandbox)",
                    )
    if unknown:
        raise invalid_argument(
            where,
            f"{where}: unknown name(s) {', '.join(sorted(unknown))}; a template can read "
            f"{', '.join(sorted(names))}",
        )
    with _budget(where, None):
        for expr in static:
            _refuse_if_over_budget(expr, where)


#: Node types an expression that reads no data is made of.
_STATIC_NODES = (
    nodes.Const, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.BinExpr,
    nodes.UnaryExpr, nodes.Concat, nodes.Compare, nodes.Operand, nodes.CondExpr,
    nodes.Filter, nodes.Test, nodes.Call, nodes.Getattr, nodes.Getitem, nodes.Slice,
    nodes.Keyword,
)  # fmt: skip
#: Globals such an expression may call.
_STATIC_GLOBALS = frozenset({"range", "lipsum", "dict"})


def _is_static(node: nodes.Node, assigned: set[str]) -> bool:
    for n in chain([node], node.find_all(nodes.Node)):
        if isinstance(n, nodes.Name):
            if n.name not in _STATIC_GLOBALS or n.name in assigned or n.ctx != "load":
                return False
        elif not isinstance(n, _STATIC_NODES):
            return False
        if isinstance(n, nodes.Filter) and n.node is None:  # a {% filter %} block
            return False
    return True


def _static_expressions(tree: nodes.Node, assigned: set[str]) -> list[nodes.Expr]:
    """The outermost expressions of ``tree`` that read no data and compute something."""
    found: list[nodes.Expr] = []
    for child in tree.iter_child_nodes():
        if isinstance(child, nodes.Expr) and _is_static(child, assigned):
            if not isinstance(child, nodes.Const | nodes.Name):
                found.append(child)
        else:
            found.extend(_static_expressions(child, assigned))
    return found


def _evaluate(expr: nodes.Expr) -> Any:
    """Run one static expression (parsed in this environment) and return its value."""
    env = environment()
    template = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)])
    template.set_environment(env)
    template.set_lineno(expr.lineno or 1)
    return TemplateExpression(env.from_string(template), False)()


def _refuse_if_over_budget(expr: nodes.Expr, where: str) -> None:
    try:
        _evaluate(expr)
    except TemplateLimitExceeded as exc:
        raise invalid_argument(
            where,
            f"{where}: an expression that reads no data breaks the rendering budget: "
            f"{exc.details.get('reason', exc.message)}",
        ) from None
    except Exception:
        return  # any other error shows when the step renders


def _strings(node: nodes.Node, constants: dict[str, set[str]], assigned: set[str]) -> set[str]:
    """The strings ``node`` can be, as far as they are visible without data."""
    if isinstance(node, nodes.Const):
        return {node.value} if isinstance(node.value, str) else set()
    if isinstance(node, nodes.Name):
        return constants.get(node.name, set())
    if isinstance(node, nodes.CondExpr):
        return _strings(node.expr1, constants, assigned) | (
            _strings(node.expr2, constants, assigned) if node.expr2 is not None else set()
        )
    if isinstance(node, nodes.Expr) and _is_static(node, assigned):
        try:
            value = _evaluate(node)
        except Exception:
            return set()  # not a string visible at save
        if isinstance(value, str):
            return {value}
        if isinstance(value, list | tuple):
            return {v for v in value if isinstance(v, str)}
    return set()


def _constant_names(tree: nodes.Node, assigned: set[str]) -> dict[str, set[str]]:
    """Variables set (``{% set %}``, ``{% for %}``) from expressions that read no data."""
    constants: dict[str, set[str]] = {}
    pairs: list[tuple[nodes.Node, nodes.Node]]
    pairs = [(n.target, n.node) for n in tree.find_all(nodes.Assign)]
    pairs += [(n.target, n.iter) for n in tree.find_all(nodes.For)]
    for target, value in pairs:
        if isinstance(target, nodes.Name) and _is_static(value, assigned):
            if isinstance(value, nodes.List | nodes.Tuple):
                strings = set().union(*(_strings(v, {}, assigned) for v in value.items))
            else:
                strings = _strings(value, {}, assigned)
            constants.setdefault(target.name, set()).update(strings)
    return constants


#: Filters (and tests) that look an attribute up by a name given as their first argument.
_ATTRIBUTE_ARG_FILTERS = frozenset({"attr", "selectattr", "rejectattr", "groupby"})


def _accessed_names(
    node: nodes.Node, constants: dict[str, set[str]], assigned: set[str]
) -> set[str]:
    if isinstance(node, nodes.Getattr):
        return {node.attr}
    if isinstance(node, nodes.Name):
        return {node.name}
    if isinstance(node, nodes.Getitem):
        return _strings(node.arg, constants, assigned)
    if isinstance(node, nodes.Filter):
        names: set[str] = set()
        if node.name in _ATTRIBUTE_ARG_FILTERS and node.args:
            names |= _strings(node.args[0], constants, assigned)
        for kwarg in node.kwargs:
            if kwarg.key == "attribute":
                names |= _strings(kwarg.value, constants, assigned)
        return names
    return set()


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


def render_value(
    value: Any,
    context: Mapping[str, Any],
    *,
    where: str = "config",
    timeout: float | None = None,
) -> Any:
    """Render every template string inside ``value``; other values are returned as they are.

    All of ``value`` renders under one budget: ``AUTOMATE["TEMPLATE_TIMEOUT_SECONDS"]``, or
    ``timeout`` (the step's) when it is shorter. Errors are permanent INVALID_ARGUMENT
    errors naming the path (a retry renders the same).
    """
    with _budget(where, timeout):
        return _render_value(value, context, where)


def _render_value(value: Any, context: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return render_string(value, context, where=where) if is_template(value) else value
    if isinstance(value, Mapping):
        return {k: _render_value(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


@contextmanager
def _budget(where: str, timeout: float | None) -> Iterator[None]:
    """Open a rendering budget unless one is open already (a nested render shares it)."""
    if template_budget._current.get() is not None:
        yield
        return
    seconds = app_settings.TEMPLATE_TIMEOUT_SECONDS
    if timeout is not None and timeout > 0:
        seconds = min(seconds, timeout)
    with template_budget.budget(seconds=seconds, where=where):
        yield


def render_string(source: str, context: Mapping[str, Any], *, where: str = "template") -> Any:
    """Render one template; a single expression keeps its native type."""
    with _budget(where, None):
        budget = template_budget.current()
        outer, budget.where = budget.where, where
        try:
            return _render_string(source, context, where)
        finally:
            budget.where = outer


def _render_string(source: str, context: Mapping[str, Any], where: str) -> Any:
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
    except RecursionError:
        raise invalid_argument(where, f"{where}: the template recursed too deeply") from None
    except MemoryError:
        raise invalid_argument(where, f"{where}: the template ran out of memory") from None
    except Exception as exc:  # every failure fails this step, nothing more
        raise invalid_argument(where, f"{where}: {type(exc).__name__}: {exc}") from None


def _check_size(result: Any, limit: int, where: str) -> None:
    if isinstance(result, int | float | bool) or result is None:
        return
    size = len(result) if isinstance(result, str) else template_budget.measure(result, limit)
    if size > limit:
        raise _too_large(limit, where)


def _too_large(limit: int, where: str) -> AutomateError:
    return TemplateLimitExceeded(
        ErrorCodes.INVALID_ARGUMENT,
        f"{where}: rendered output exceeds {limit} characters",
        retryable=False,
        details={"field": where, "budget": "output", "limit": limit},
    )
