"""The budget a template renders under: a deadline and a size limit, checked while it runs.

Jinja's sandbox stops a template from reaching Python internals; it does not stop one from
spending seconds of CPU or gigabytes of memory (``9 ** (9 ** 9)``, ``'x' * 400000000``,
``'%400000000s' % 'x'``, ``'x'|center(400000000)``, nested ``range`` loops). A single such
operation runs in C and cannot be interrupted, so the size of its result is computed
*before* it runs, from its operands, and refused when it would pass the limit; everything
that can loop (function and filter calls, attribute lookups, ``for`` iterations,
operators) checks the deadline as it goes. Nothing here uses threads, signals or tracing.

:class:`BoundedEnvironment` is the sandbox with these guards; :func:`budget` opens a budget
for one render. Outside a budget (Jinja folds constant expressions while compiling) the
size limit still applies, from ``AUTOMATE["TEMPLATE_MAX_OUTPUT"]``, without a deadline.
"""

from __future__ import annotations

import functools
import operator
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from automate.conf import settings as app_settings
from automate_core.providers.errors import AutomateError, ErrorCodes

#: Largest ``range()`` a template may build (Jinja's own sandbox cap).
MAX_RANGE = 100_000
#: Deepest nesting of calls (macros calling macros, ``loop()`` in recursive loops).
MAX_CALL_DEPTH = 64

#: The clock deadlines are measured on; tests replace it with a controllable one.
clock: Callable[[], float] = time.monotonic


class TemplateLimitExceeded(AutomateError):
    """A template went over its budget (time, size or depth) while rendering."""


@dataclass
class Budget:
    """What one render may still spend. ``deadline`` is a :data:`clock` reading or None."""

    limit: int
    deadline: float | None = None
    depth: int = 0
    where: str = "template"

    def tick(self) -> None:
        if self.deadline is not None and clock() > self.deadline:
            raise over_budget(self.where, "time", "rendering took longer than its deadline")

    def size(self, size: int, what: str) -> None:
        if size > self.limit:
            raise over_budget(
                self.where, "size", f"{what} would exceed {self.limit} characters or items"
            )


_current: ContextVar[Budget | None] = ContextVar("automate_template_budget", default=None)


def over_budget(where: str, kind: str, message: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        ErrorCodes.INVALID_ARGUMENT,
        f"{where}: {message}",
        retryable=False,
        details={"field": where, "budget": kind, "reason": message},
    )


def current() -> Budget:
    """The open budget, or one with the size limit only (constant folding, validation)."""
    found = _current.get()
    return found if found is not None else Budget(limit=app_settings.TEMPLATE_MAX_OUTPUT)


@contextmanager
def budget(*, seconds: float | None, where: str) -> Iterator[Budget]:
    """Open a budget for one render: ``seconds`` from now (None: no deadline)."""
    opened = Budget(
        limit=app_settings.TEMPLATE_MAX_OUTPUT,
        deadline=None if seconds is None else clock() + seconds,
        where=where,
    )
    token = _current.set(opened)
    try:
        yield opened
    finally:
        _current.reset(token)


# -- Sizes --------------------------------------------------------------------------------


def measure(value: Any, limit: int) -> int:
    """About how many characters ``value`` takes as text, counted until past ``limit``.

    Shared references count each time they appear (``[[x] * 1000] * 1000`` is a million
    items as text though it holds two lists), so this walks, rather than trusts ``len``.
    """
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset | range):
            total += 2 + 2 * len(item)
            if not isinstance(item, range):
                stack.extend(item)
        else:
            total += 16
    return total


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | range) else 0


def _int_bits_limit(limit: int) -> int:
    # A decimal digit is about 3.3 bits: an int may have about ``limit`` digits.
    return limit * 4


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def check_percent(fmt: str, args: Any, b: Budget) -> None:
    """``fmt % args``: refuse widths and precisions past the limit, and huge arguments."""
    size = len(fmt) + measure(args, b.limit)
    starred = False
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*":
                starred = True
            elif number:
                size += int(number) if len(number) < 12 else b.limit + 1
    if starred:
        values = args if isinstance(args, tuple) else (args,)
        size += sum(abs(v) for v in values if isinstance(v, int))
    b.size(size, "formatting")


def check_format_method(fmt: str, args: tuple, kwargs: dict, b: Budget) -> None:
    """``fmt.format(...)``: the same rule for ``{:400000000}`` style specs."""
    size = len(fmt) + measure(args, b.limit) + measure(kwargs, b.limit)
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _literal, _name, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:  # a nested width: count every number passed in
            size += sum(abs(v) for v in (*args, *kwargs.values()) if isinstance(v, int))
        for number in re.findall(r"\d+", spec):
            size += int(number) if len(number) < 12 else b.limit + 1
    b.size(size, "formatting")


_SEQUENCES = (str, bytes, list, tuple)


def check_binop(op: str, left: Any, right: Any, b: Budget) -> None:
    """Refuse ``left op right`` when its result would pass the budget, before computing."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(times, int) and isinstance(seq, str | bytes | list | tuple):
                b.size(_length(seq) * max(times, 0), "repetition")
        if isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            b.size(b.limit + 1 if bits > _int_bits_limit(b.limit) else 0, "the product")
    elif op == "**" and isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() * right if right > 0 and abs(left) > 1 else 0
        b.size(b.limit + 1 if bits > _int_bits_limit(b.limit) else 0, "the power")
    elif op == "%" and isinstance(left, str):
        check_percent(left, right, b)
    elif op == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        b.size(_length(left) + _length(right), "the sum")


def check_method(obj: Any, args: tuple, kwargs: dict, b: Budget) -> None:
    """Refuse a call of a ``str`` (or ``bytes``) method whose result would pass the budget."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, str | bytes):
        return
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        b.size(max(args[0], len(owner)), f"str.{name}")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            b.size(len(owner) + tabs * max(tab, 0), "str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1, b)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_length(v) for v in args[0].values()), default=1)
        b.size(len(owner) * max(longest, 1), "str.translate")
    elif name == "join" and args:
        b.size(measure(list(bounded_items(args[0], b)), b.limit), "str.join")


def check_replace(s: Any, old: Any, new: Any, count: Any, b: Budget) -> None:
    if not all(isinstance(v, str | bytes) for v in (s, old, new)):
        return
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    b.size(len(s) + found * max(len(new) - len(old), 0), "replace")


def bounded_items(iterable: Any, b: Budget) -> list[Any]:
    """The items of ``iterable`` as a list, refused past ``b.limit`` items."""
    if isinstance(iterable, str | Mapping):
        return list(iterable)
    items = []
    for item in iterable:
        items.append(item)
        if len(items) > b.limit:
            b.size(len(items), "the sequence")
        b.tick()
    return items


# -- Filters and globals ------------------------------------------------------------------

#: Filters that turn their input into text: the input is measured first.
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
        "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip


def _check_filter(name: str, args: tuple, kwargs: dict, b: Budget) -> tuple:
    """Refuse a filter call that would pass the budget; return its (maybe listed) args."""
    value = args[0] if args else None
    rest = args[1:]

    def arg(index: int, key: str, default: Any = None) -> Any:
        return rest[index] if len(rest) > index else kwargs.get(key, default)

    if name in _TEXT_FILTERS:
        b.size(measure(value, b.limit), f"the input of |{name}")
    if name == "center":
        width = arg(0, "width", 80)
        if isinstance(width, int):
            b.size(width, "|center")
    elif name == "indent":
        width = arg(0, "width", 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        pad = width if isinstance(width, int) else len(str(width))
        b.size(_length(value) + lines * max(pad, 0), "|indent")
    elif name == "format" and isinstance(value, str):
        check_percent(value, tuple(rest) or dict(kwargs), b)
    elif name == "replace":
        check_replace(value, arg(0, "old"), arg(1, "new"), arg(2, "count"), b)
    elif name == "wordwrap" and isinstance(value, str):
        width, wrap = arg(0, "width", 79), arg(3, "wrapstring", "\n")
        lines = len(value) // max(width, 1) + 1 if isinstance(width, int) else len(value)
        b.size(len(value) + lines * _length(wrap), "|wordwrap")
    elif name in ("batch", "slice"):
        count = arg(0, "linecount" if name == "batch" else "slices")
        if isinstance(count, int):
            b.size(count, f"|{name}")
    elif name == "join":
        items = bounded_items(value, b)
        sep = arg(0, "d", "")
        b.size(measure(items, b.limit) + _length(sep) * len(items), "|join")
        return (items, *rest)
    elif name == "sum":
        items = bounded_items(value, b)
        start = arg(1, "start", 0)
        if not isinstance(start, int | float):
            b.size(_length(start) + sum(_length(i) for i in items), "|sum")
        return (items, *rest)
    return args


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` checking the deadline and its arguments first (Jinja's pass-through
    decorators are kept: ``functools.wraps`` copies their marker)."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = current()
        b.tick()
        # A filter marked pass_context/eval_context/environment gets that object first.
        offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
        checked = _check_filter(name, args[offset:], kwargs, b)
        return func(*args[:offset], *checked, **kwargs)

    return guarded


def bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise over_budget(current().where, "size", f"range() is capped at {MAX_RANGE} items")
    return rng


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
    from jinja2.utils import generate_lorem_ipsum

    current().size(n * max * 12, "lipsum()")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def bounded_concat(parts: Iterable[Any]) -> str:
    """Join the output chunks of a block, macro or capture, refusing past the limit."""
    b = current()
    chunks = list(parts)
    b.size(sum(len(c) if isinstance(c, str) else 16 for c in chunks), "the block's output")
    return "".join(chunks)


# -- The environment ----------------------------------------------------------------------


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles every ``for`` loop over a guarded iterator and every ``~`` through a
    size check (plain Jinja runs both as bare Python, out of the sandbox's hooks)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not node.recursive:
            at = {"lineno": node.lineno, "environment": node.environment}
            guard = nodes.EnvironmentAttribute("guard_iter", **at)
            wrapped = nodes.Call(guard, [node.iter], [], None, None, **at)
            node = nodes.For(node.target, wrapped, node.body, node.else_, node.test, False, **at)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guard_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every guard of this module installed."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(bounded_concat)  # type: ignore[assignment]

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def _finalize(value: Any) -> Any:
        b = current()
        b.tick()
        if not isinstance(value, str):
            b.size(measure(value, b.limit), "the value")
        return value

    @staticmethod
    def guard_iter(iterable: Any) -> Iterator[Any]:
        b = current()
        for item in iterable:
            b.tick()
            yield item

    @staticmethod
    def guard_concat(parts: tuple[Any, ...]) -> str:
        b = current()
        b.tick()
        b.size(sum(measure(p, b.limit) for p in parts), "the concatenation")
        return str_join(parts)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format``, with its widths checked first."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def guarded(*args: Any, **kwargs: Any) -> str:
            b = current()
            b.tick()
            if is_map:
                mapping = args[0] if args and isinstance(args[0], Mapping) else {}
                check_format_method(fmt, (), dict(mapping), b)
            else:
                check_format_method(fmt, args, kwargs, b)
            return wrapped(*args, **kwargs)

        return guarded

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        current().tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        b = current()
        b.tick()
        check_binop(operator_, left, right, b)
        return _BINOPS[operator_](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        b = current()
        b.tick()
        check_method(__obj, args, kwargs, b)
        if b.depth >= MAX_CALL_DEPTH:
            raise over_budget(b.where, "depth", f"calls nest deeper than {MAX_CALL_DEPTH}")
        b.depth += 1
        try:
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            b.depth -= 1


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
    "+": operator.add,
}
