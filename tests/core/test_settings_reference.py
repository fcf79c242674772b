"""docs/reference.md lists every ``AUTOMATE`` key the code reads, with the code's default.

The keys are found in the source, not in a list kept here: every module under src/
(new ones included) is parsed with ``ast`` for

* the fields of each app's settings class (an ``AppSettings`` subclass, in its ``conf``);
* attribute reads on any app's settings object under any local name
  (``from automate.conf import settings as app_settings``: ``app_settings.X``,
  ``getattr(app_settings, "X")``, ``conf.settings.X``);
* constant subscripts and ``.get()``-like calls on ``settings.AUTOMATE``,
  ``getattr(settings, "AUTOMATE", ...)`` and names bound to either;
* ``AUTOMATE={...}`` literals, and ``AUTOMATE["X"]`` in strings (messages telling a
  user what to set).
"""

from __future__ import annotations

import ast
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from automate_core.conf import installed_settings_classes

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
REFERENCE = ROOT / "docs" / "reference.md"

SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
IN_TEXT = re.compile(r"""AUTOMATE\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]""")
DICT_READS = {"get", "setdefault", "pop", "__getitem__", "__contains__"}


# -- Keys the code reads -------------------------------------------------------------


def _is_automate_dict(node: ast.AST, aliases: set[str]) -> bool:
    """``x.AUTOMATE``, ``getattr(x, "AUTOMATE", ...)``, or a name bound to one of them."""
    if isinstance(node, ast.Name):
        return node.id in aliases
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "AUTOMATE":
            return True
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "getattr"
            and len(sub.args) >= 2
            and _constant(sub.args[1]) == "AUTOMATE"
        ):
            return True
    return False


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_conf(module: str | None) -> bool:
    """An app's settings module (``automate.conf``, ``automate_llm.conf``), not Django's."""
    return bool(module) and module.endswith(".conf") and module != "django.conf"


def _settings_aliases(tree: ast.AST, module: str) -> set[str]:
    """Local names of an app's ``conf.settings`` (``settings`` inside a conf module)."""
    names = {"settings"} if _is_conf(module) else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_conf(node.module):
            names |= {a.asname or a.name for a in node.names if a.name == "settings"}
    return names


def _module_aliases(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if _is_conf(a.name) and a.asname}
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "django":
            names |= {a.asname or a.name for a in node.names if a.name == "conf"}
    return names


def _declared_fields(node: ast.AST) -> set[str]:
    """The fields of ``class X(AppSettings)``: the keys an app declares."""
    if not isinstance(node, ast.ClassDef):
        return set()
    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
    if "AppSettings" not in bases:
        return set()
    return {
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }


def _automate_dict_names(tree: ast.AST) -> set[str]:
    """Names assigned from an AUTOMATE dict (``user = getattr(settings, "AUTOMATE", {})``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _is_automate_dict(node.value, set()):
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def keys_read(source: str, module: str) -> set[str]:
    """Every AUTOMATE key that ``source`` (the module ``module``) reads or names."""
    tree = ast.parse(source)
    settings_names = _settings_aliases(tree, module)
    conf_modules = _module_aliases(tree)
    dict_names = _automate_dict_names(tree)
    keys: set[str] = set()
    for node in ast.walk(tree):
        keys |= _keys_at(node, settings_names, conf_modules, dict_names, module)
    return {key for key in keys if SETTING_NAME.fullmatch(key)}


def _keys_at(
    node: ast.AST, settings_names: set[str], conf_modules: set[str], dict_names: set[str], module
) -> set[str]:
    if isinstance(node, ast.ClassDef):
        return _declared_fields(node)
    if isinstance(node, ast.Attribute):
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in settings_names:
            return {node.attr}
        if (
            isinstance(owner, ast.Attribute)
            and owner.attr == "settings"
            and isinstance(owner.value, ast.Name)
            and owner.value.id in conf_modules
        ):
            return {node.attr}
    if isinstance(node, ast.Call):
        return _keys_in_call(node, settings_names, dict_names)
    if isinstance(node, ast.Subscript) and _is_automate_dict(node.value, dict_names):
        key = _constant(node.slice)
        return {key} if key else set()
    if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        named = {t.id for t in targets if isinstance(t, ast.Name)}
        if named & {"AUTOMATE"}:
            return {k for k in map(_constant, node.value.keys) if k}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return set(IN_TEXT.findall(node.value))
    return set()


def _keys_in_call(node: ast.Call, settings_names: set[str], dict_names: set[str]) -> set[str]:
    func = node.func
    if isinstance(func, ast.Name) and func.id in {"getattr", "hasattr"} and len(node.args) >= 2:
        owner = node.args[0]
        if isinstance(owner, ast.Name) and owner.id in settings_names:
            key = _constant(node.args[1])
            return {key} if key else set()
    if (
        isinstance(func, ast.Attribute)
        and func.attr in DICT_READS
        and node.args
        and _is_automate_dict(func.value, dict_names)
    ):
        key = _constant(node.args[0])
        return {key} if key else set()
    keys: set[str] = set()
    for keyword in node.keywords:
        if keyword.arg == "AUTOMATE" and isinstance(keyword.value, ast.Dict):
            keys |= {k for k in map(_constant, keyword.value.keys) if k}
    return keys


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def keys_in_tree(root: Path) -> dict[str, set[str]]:
    """key -> the modules under ``root`` that read it."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = _module_name(path, root)
        for key in keys_read(path.read_text(), module):
            found.setdefault(key, set()).add(module)
    return found


# -- Keys the reference documents ----------------------------------------------------


def documented_rows() -> Iterator[list[str]]:
    """The cells of each row of the page's tables whose first header is ``setting``."""
    in_settings_table = False
    for line in REFERENCE.read_text().splitlines():
        if not line.startswith("|"):
            in_settings_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "setting":
            in_settings_table = True
        elif in_settings_table and not set(cells[0]) <= {"-", ":"}:
            yield cells


def documented() -> dict[str, list[str]]:
    rows = {}
    for cells in documented_rows():
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert match, f"docs/reference.md: {cells[0]!r} is not one `SETTING` name"
        rows[match.group(1)] = cells
    return rows


# -- Keys the apps declare ----------------------------------------------------------

CLASSES = installed_settings_classes()  # tests/settings.py installs every app
DECLARED = {name: cls for cls in CLASSES for name in cls.names()}
DEFAULTS = {name: value for cls in CLASSES for name, value in cls.defaults().items()}


def declared_in_tree(root: Path) -> set[str]:
    return {
        name
        for path in root.rglob("conf.py")
        for node in ast.walk(ast.parse(path.read_text()))
        for name in _declared_fields(node)
    }


# -- Tests ---------------------------------------------------------------------------


def test_settings_classes__each_app_declares_its_own_keys_once():
    assert {cls.__module__ for cls in CLASSES} == {
        "automate_core.conf",
        "automate.conf",
        "automate_llm.conf",
    }
    assert sum(len(cls.names()) for cls in CLASSES) == len(DECLARED), "a key declared twice"
    # Every class in src/ is found through an installed AppConfig.automate_settings.
    assert declared_in_tree(SRC) == set(DECLARED)


def test_reference__lists_every_key_the_code_reads():
    found = keys_in_tree(SRC)
    assert set(DEFAULTS) <= set(found)  # the discovery sees the settings classes
    missing = {key: sorted(modules) for key, modules in found.items() if key not in documented()}
    assert not missing, f"read in src/ but not in docs/reference.md: {missing}"


def test_reference__lists_only_real_settings():
    stale = set(documented()) - set(DEFAULTS)
    assert not stale, f"docs/reference.md documents keys no settings class declares: {stale}"


TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "dict": dict,
    "list": list,
    "dotted": str,
}


def runtime_types(annotation) -> set[type]:
    """The Python types a declared annotation admits (``str`` for a Literal of strings)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(runtime_types(a) for a in args))
    if origin is typing.Literal:
        return {type(a) for a in args}
    if origin is not None:
        return {origin}
    return {annotation}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_reference__type_and_default_match_the_code(name):
    cells = documented().get(name)
    assert cells is not None, f"{name} is not documented in docs/reference.md"
    assert len(cells) == 4, f"{name}: expected setting | type | default | meaning"
    _, type_cell, default_cell, meaning = cells
    assert meaning, f"{name} has no description"
    default = DEFAULTS[name]
    annotation = typing.get_type_hints(DECLARED[name])[name]
    expected_type = TYPES.get(type_cell.split()[0])
    assert expected_type is not None, f"{name}: the type cell {type_cell!r} names no type"
    assert expected_type in runtime_types(annotation), (name, type_cell, annotation)
    if default is not None:
        assert isinstance(default, expected_type), (name, type_cell, default)
    code_span = re.fullmatch(r"`([^`]+)`", default_cell)
    if code_span:  # prose defaults ("environment, settings, database") are not literals
        assert ast.literal_eval(code_span.group(1)) == default, (name, default_cell, default)


def test_discovery__finds_keys_in_every_form_and_in_new_modules(tmp_path):
    """The test above would miss nothing: each way code reads a key is found."""
    package = tmp_path / "newapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "reads.py").write_text(
        "from django.conf import settings\n"
        "from automate_core.conf import settings as conf\n"
        "import automate_core.conf as core_conf\n"
        "from automate_core import conf as conf_module\n"
        "A = conf.ATTRIBUTE_READ\n"
        "B = getattr(conf, 'GETATTR_READ')\n"
        "C = core_conf.settings.MODULE_READ\n"
        "D = conf_module.settings.FROM_IMPORT_READ\n"
        "E = settings.AUTOMATE['SUBSCRIPT_READ']\n"
        "F = getattr(settings, 'AUTOMATE', {}).get('GET_READ')\n"
        "user = dict(getattr(settings, 'AUTOMATE', {}))\n"
        "G = user.get('ALIAS_GET_READ', 1)\n"
        "user['ALIAS_WRITE'] = 2\n"
        "H = 'set AUTOMATE[\"NAMED_IN_A_MESSAGE\"] to fix this'\n"
        "override = dict(AUTOMATE={'KEYWORD_LITERAL': 1})\n"
        "other = {'NOT_A_SETTING': 1}\n"
        "I = other['NOT_A_SETTING_EITHER']\n"
        "J = conf.lowercase_is_no_setting\n"
        "from newapp.conf import settings as newapp_settings\n"
        "from newapp import conf as newapp_conf\n"
        "K = newapp_settings.APP_OBJECT_READ\n"
        "L = newapp_conf.settings.APP_MODULE_READ\n"
        "from django.conf import settings as django_settings\n"
        "M = django_settings.NOT_AN_AUTOMATE_KEY\n"
    )
    (package / "conf.py").write_text(
        "from dataclasses import dataclass\n"
        "from automate_core.conf import AppSettings\n"
        "@dataclass(frozen=True)\n"
        "class NewAppSettings(AppSettings):\n"
        "    DECLARED_KEY: int = 1\n"
        "class Other:\n"
        "    NOT_DECLARED: int = 1\n"
        "settings = NewAppSettings.lazy()\n"
        "N = settings.READ_IN_CONF\n"
    )

    found = keys_in_tree(tmp_path)

    assert set(found) == {
        "ATTRIBUTE_READ",
        "GETATTR_READ",
        "MODULE_READ",
        "FROM_IMPORT_READ",
        "SUBSCRIPT_READ",
        "GET_READ",
        "ALIAS_GET_READ",
        "ALIAS_WRITE",
        "NAMED_IN_A_MESSAGE",
        "KEYWORD_LITERAL",
        "APP_OBJECT_READ",
        "APP_MODULE_READ",
        "DECLARED_KEY",
        "READ_IN_CONF",
    }
    assert declared_in_tree(tmp_path) == {"DECLARED_KEY"}
    assert found["ATTRIBUTE_READ"] == {"newapp.reads"}


CHECK_ID = re.compile(r"""["'](automate\.[EW]\d{3})["']""")


def test_reference__lists_every_system_check_id():
    in_code = {
        match
        for path in SRC.rglob("*.py")
        for match in CHECK_ID.findall(path.read_text(encoding="utf-8"))
    }
    text = REFERENCE.read_text(encoding="utf-8")
    table = text[text.index("## System checks") :]
    documented_ids = set(re.findall(r"^\| `(automate\.[EW]\d{3})` \|", table, re.MULTILINE))
    assert in_code, "no check id found in src/: the pattern is out of date"
    assert in_code - documented_ids == set(), "check ids missing from docs/reference.md"
    assert documented_ids - in_code == set(), "docs/reference.md lists check ids no code has"
