"""The example project as docker-compose.yml serves it: DEBUG off, behind gunicorn.

Docker need not run here: each promise of the stack is proven on the parts it is made of
(the settings in a subprocess, the WSGI app, docker-compose.yml, Dockerfile, .dockerignore).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example"
SECRETS = ("DJANGO_SECRET_KEY", "GITHUB_WEBHOOK_SECRET")


def example_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The example settings alone: no database, broker or secret from the caller's shell."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "CELERY_", "GITHUB_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(EXAMPLE)]),
        DJANGO_SETTINGS_MODULE="example_project.settings",
        SQLITE_PATH=str(tmp_path / "example.sqlite3"),
        # Any warning fails, e.g. WhiteNoise's about a STATIC_ROOT that does not exist.
        PYTHONWARNINGS="error",
    )
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120
    )


# -- The settings refuse the published secrets with DEBUG off ---------------------------


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({}, ["DJANGO_SECRET_KEY", "GITHUB_WEBHOOK_SECRET"]),
        ({"DJANGO_SECRET_KEY": "k" * 50}, ["GITHUB_WEBHOOK_SECRET"]),
        ({"GITHUB_WEBHOOK_SECRET": "mine"}, ["DJANGO_SECRET_KEY"]),
        # The demo value copied into the environment is as public as the default.
        (
            {"DJANGO_SECRET_KEY": "k" * 50, "GITHUB_WEBHOOK_SECRET": "demo-github-secret"},
            ["GITHUB_WEBHOOK_SECRET"],
        ),
        ({"DJANGO_SECRET_KEY": "", "GITHUB_WEBHOOK_SECRET": "mine"}, ["DJANGO_SECRET_KEY"]),
    ],
)
def test_debug_off__published_secret__refuses_to_start_naming_the_variable(
    tmp_path, given, refused
):
    result = run(["manage.py", "check"], example_env(tmp_path, DJANGO_DEBUG="0", **given))

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for name in SECRETS:
        assert (name in message) == (name in refused), message
    # The refusal names the variable, never a value.
    for value in given.values():
        if value:
            assert value not in message


def test_debug_off__own_secrets__starts(tmp_path):
    env = example_env(
        tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 50, GITHUB_WEBHOOK_SECRET="mine"
    )
    result = run(["manage.py", "check"], env)
    assert result.returncode == 0, result.stderr


def test_debug_on__demo_defaults__still_start_without_whitenoise(tmp_path):
    """`make demo` on a plain install: no secret to set, and WhiteNoise is optional."""
    script = (
        "import sys; sys.modules['whitenoise'] = None\n"  # as if it were not installed
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.core.management import call_command\n"
        "call_command('check')\n"
        "print('MIDDLEWARE', settings.MIDDLEWARE)\n"
    )
    result = run(["-c", script], example_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "MIDDLEWARE" in result.stdout
    assert "whitenoise" not in result.stdout


# -- The admin's static files are served with DEBUG off ---------------------------------

SERVE = """
import sys
from io import BytesIO
from wsgiref.util import setup_testing_defaults

from example_project.wsgi import application

for path in sys.argv[1:]:
    environ = {"PATH_INFO": path, "HTTP_HOST": "127.0.0.1", "wsgi.input": BytesIO()}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(application(environ, lambda s, h, *a: status.append(s)))
    print(path, status[0].split()[0], len(body))
"""


def test_debug_off__admin_static_files__served_by_the_wsgi_app(tmp_path):
    pytest.importorskip("whitenoise", reason="the dev extra installs WhiteNoise")
    env = example_env(
        tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 50,
        GITHUB_WEBHOOK_SECRET="mine",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )
    collected = run(["manage.py", "collectstatic", "--noinput", "-v", "0"], env)
    assert collected.returncode == 0, collected.stderr
    css = tmp_path / "static" / "admin" / "css" / "base.css"
    assert css.is_file()

    served = run(["-c", SERVE, "/static/admin/css/base.css", "/static/admin/css/nope.css"], env)

    assert served.returncode == 0, served.stderr
    lines = dict(line.split(" ", 1) for line in served.stdout.splitlines())
    assert lines["/static/admin/css/base.css"] == f"200 {css.stat().st_size}"
    assert lines["/static/admin/css/nope.css"].startswith("404 ")


# -- docker-compose.yml, Dockerfile, .dockerignore --------------------------------------


def compose_app_services() -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build") == "."  # the services built from this repository
    }


def test_compose__secrets_are_required_from_the_environment():
    services = compose_app_services()
    assert {"web", "worker", "dispatcher", "migrate"} <= set(services)
    for name, service in services.items():
        environment = service["environment"]
        assert environment["DJANGO_DEBUG"] == "0", name
        for secret in SECRETS:
            value = environment.get(secret)
            # ${NAME:?message}: compose stops when it is unset or empty; no default literal.
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", str(value)), (name, value)


def test_dockerfile__copies_the_files_pyproject_names_and_collects_static():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for needed in [project["readme"], *project["license-files"]]:
        assert needed in copied, f"the image build needs {needed}"
    assert "LICENSE" in copied
    assert re.search(r"pip install .*\[[^\]]*\bserve\b", dockerfile)
    assert any("whitenoise" in dep for dep in project["optional-dependencies"]["serve"])
    assert re.search(r"^RUN .*manage\.py collectstatic --noinput", dockerfile, re.M)
    assert re.search(r"^ENV DJANGO_STATIC_ROOT=", dockerfile, re.M)


def test_dockerignore__keeps_venv_git_and_databases_out_of_the_build_context():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "**/__pycache__", "**/*.sqlite3"} <= ignored
