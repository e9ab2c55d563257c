"""The layering of the apps holds: a small AST check of every import in app code.

- `webhooks` imports no other app (its job target and deliveries name a job by "jobs.Job" and by
  id; the jobs app calls it, never the reverse);
- `media` and `credits` import no other app (but media reads the one definition of how untrusted
  media is opened, `gpu_tasks/input_policy.py`, a module without imports, which the engines use
  too, and runs its probe in the children of `gpu_tasks/confined.py`, isolated by
  `gpu_tasks/sandbox.py`: two more such leaves, which the local runner and the timeline importers
  use too; a leaf imports nothing of the project but another leaf); `projects` imports only
  `media` of the apps (and the effect vocabulary, `gpu_tasks/effect_vocabulary.py`, another such
  leaf, which the render engine reads too, and the confined runner for its timeline readers);
- `gpu_tasks` imports neither Django nor any app (it runs inside Modal's containers);
- `jobs` reaches `gpu_tasks` only through its client (`jobs/gpu_client.py`) and its specs
  (`jobs/specs.py`);
- `auteur/` is the wiring (settings, URLs, entry points, the Celery app, health checks) above its
  foundations, `auteur/core/` and `auteur/users/`: apps import those two, never the rest of
  `auteur`, and the foundations import no app nor the wiring (`auteur/core/untrusted.py` runs
  parsers through the confined runner, a shared leaf);
- nothing imports `jobs` but the wiring (`auteur/urls.py`, `auteur/asgi.py`, `auteur/celery.py` by
  autodiscovery) and the two apps that read it: `realtime` and `metrics_exporter`;
- `realtime` (SSE, the WebSocket, `Prefer: wait`) imports only `jobs` of the apps (and the
  foundations, Django, DRF and Channels); nothing imports it but the wiring (`auteur/asgi.py`,
  `auteur/urls.py`, and INSTALLED_APPS by name): the jobs app appends to the event streams, and
  realtime only reads them;
- `metrics_exporter` imports only `jobs`, `credits` and `webhooks` of the apps (and the
  foundations and Django); nothing imports it (INSTALLED_APPS finds its command by name);
- `billing` imports only `credits` of the apps (and the foundations); nothing imports `billing`
  but the wiring (`auteur/urls.py`, and INSTALLED_APPS by name).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("auteur", "credits", "media", "projects", "jobs", "gpu_tasks", "webhooks", "billing", "realtime",
        "metrics_exporter")


@functools.cache
def _parse(text: str, filename: str) -> ast.Module:
    """A file's syntax tree, once per process for the same text: the tests here walk the tree again and
    again (read only), and parsing it was most of their time."""
    return ast.parse(text, filename)


def parse(path: Path) -> ast.Module:
    return _parse(path.read_text(), str(path))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def modules(package: str) -> Iterator[Path]:
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


SHARED_LEAVES = ("gpu_tasks.input_policy", "gpu_tasks.effect_vocabulary", "gpu_tasks.sandbox", "gpu_tasks.confined",
                 "gpu_tasks.bounded")


def violations(package: str, allowed: set[str], *, exempt: tuple[str, ...] = ()) -> list[str]:
    """Imports of another top-level app (or of django, when listed) that `allowed` does not admit."""
    found = []
    for path in modules(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel in exempt:
            continue
        for line, name in imports(path):
            top = name.split(".")[0]
            if name in SHARED_LEAVES:
                continue
            if top in (*APPS, "django", "rest_framework") and top != package and top not in allowed:
                found.append(f"{rel}:{line} imports {name}")
    return found


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("media", {"auteur", "django", "rest_framework"}),
        ("credits", {"auteur", "django", "rest_framework"}),
        ("webhooks", {"auteur", "django", "rest_framework"}),
        ("projects", {"auteur", "media", "django", "rest_framework"}),
        ("billing", {"auteur", "credits", "django", "rest_framework"}),
        ("realtime", {"auteur", "jobs", "django", "rest_framework"}),
        ("metrics_exporter", {"auteur", "jobs", "credits", "webhooks", "django"}),
        ("gpu_tasks", set()),
    ],
)
def test_lower_apps_import_no_app_above_them(package: str, allowed: set[str]):
    assert violations(package, allowed) == []


def test_gpu_tasks_imports_no_django_at_all():
    bad = [f"{p.relative_to(ROOT)}:{line} {name}" for p in modules("gpu_tasks") for line, name in imports(p)
           if name.split(".")[0] in ("django", "rest_framework", "celery", "auteur")]
    assert bad == []


def test_apps_reach_the_auteur_package_only_for_its_core_and_users():
    """The one rule of `auteur/`: apps import `auteur.core` and `auteur.users`, never the rest of
    `auteur`, which is the wiring (settings, URLs, entry points, the Celery app, health checks)."""
    # `manage.py doctor` is an interface over every component, readiness's checks included.
    wiring = {"jobs/management/commands/doctor.py"}
    bad = []
    for package in ("credits", "media", "projects", "jobs", "webhooks", "billing", "realtime", "metrics_exporter"):
        for path in modules(package):
            if path.relative_to(ROOT).as_posix() in wiring:
                continue
            bad += [f"{path.relative_to(ROOT)}:{line} {name}" for line, name in imports(path)
                    if name.split(".")[0] == "auteur" and not name.startswith(("auteur.core", "auteur.users"))]
    assert bad == []


def test_the_wiring_is_all_that_is_left_at_the_top_of_auteur():
    # A new module of auteur/ is wiring or a foundation: a foundation goes to auteur/core/.
    top = sorted(p.stem for p in (ROOT / "auteur").glob("*.py"))
    assert top == ["__init__", "asgi", "asgi_limits", "beat", "celery", "gunicorn_conf", "health", "index",
                   "metrics", "middleware", "urls", "wsgi"], top


def test_jobs_reaches_gpu_tasks_only_through_its_client_and_specs():
    exempt = ("jobs/gpu_client.py", "jobs/specs.py")
    allowed = {"auteur", "credits", "media", "projects", "webhooks", "django", "rest_framework"}
    assert violations("jobs", allowed, exempt=exempt) == []


def test_the_shared_leaves_import_nothing_of_the_project():
    for name in SHARED_LEAVES:
        path = ROOT / (name.replace(".", "/") + ".py")
        assert [n for _, n in imports(path) if n.split(".")[0] in (*APPS, "django") and n not in SHARED_LEAVES] == []


def test_foundations_import_no_app():
    bad = []
    for path in [*modules("auteur/users"), *modules("auteur/core")]:
        bad += [f"{path.relative_to(ROOT)}:{line} {name}" for line, name in imports(path)
                if name.split(".")[0] in APPS and name.split(".")[0] != "auteur" and name not in SHARED_LEAVES]
        # Nor the wiring above them: only the core and the users.
        bad += [f"{path.relative_to(ROOT)}:{line} {name}" for line, name in imports(path)
                if name.split(".")[0] == "auteur" and not name.startswith(("auteur.core", "auteur.users"))]
    assert bad == []


def importers(target: str, *, wiring: set[str], readers: tuple[str, ...] = ()) -> list[str]:
    """Imports of `target` anywhere in the apps (every one in APPS, so a new app is checked too)
    but in its own package, the wiring's files and the apps in `readers`."""
    bad = []
    for package in APPS:
        if package == target or package in readers:
            continue
        for path in modules(package):
            rel = path.relative_to(ROOT).as_posix()
            if rel in wiring:
                continue
            bad += [f"{rel}:{line} {name}" for line, name in imports(path) if name.split(".")[0] == target]
    return bad


def test_nothing_but_the_wiring_imports_jobs():
    wiring = {"auteur/urls.py", "auteur/celery.py", "auteur/asgi.py"}
    assert importers("jobs", wiring=wiring, readers=("realtime", "metrics_exporter")) == []


def test_nothing_but_the_wiring_imports_billing():
    assert importers("billing", wiring={"auteur/urls.py"}) == []


def test_nothing_but_the_wiring_imports_realtime():
    assert importers("realtime", wiring={"auteur/asgi.py", "auteur/urls.py"}) == []


def test_nothing_imports_the_metrics_exporter():
    assert importers("metrics_exporter", wiring=set()) == []


def test_domain_errors_carry_no_http_status():
    """Services, selectors and each app's errors.py speak in error codes; auteur/core/errors.py alone
    knows which HTTP status a code is answered with."""
    bad = []
    for package in ("credits", "media", "projects", "jobs", "billing"):
        for path in modules(package):
            rel = path.relative_to(ROOT).as_posix()
            if not any(part in rel for part in ("errors.py", "services", "selectors")):
                continue
            text = path.read_text()
            bad += [f"{rel}: {needle}" for needle in ("status_code", "rest_framework import status")
                    if needle in text]
    assert bad == []


# ---- No import cycle within an app. Lazy imports (inside a function) count: they hide a cycle
# from the interpreter, not from a reader. Only imports under `if TYPE_CHECKING:` are left out.


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    def visit(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for branch in child.orelse for n in visit(branch))
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from visit(child)

    return visit(tree)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same app it names in an import. (The packages above a module,
    which Python imports first, are left out: a package's `__init__` that re-exports its
    submodules is not a cycle a reader has to untangle.)"""
    graph: dict[str, set[str]] = {}
    for path in modules(package):
        here = _module_name(path)
        targets: set[str] = set()
        for node in _runtime_imports(parse(path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names]
            targets.update(names)
        top = package.split("/")[0]
        graph[here] = {t for t in targets if t.split(".")[0] == top and t != here and _is_module(t)}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


@pytest.mark.parametrize("package", APPS)
def test_no_import_cycle_within_an_app(package: str):
    assert import_cycles(import_graph(package)) == []


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "sub" / "__init__.py").write_text("")
    (app / "a.py").write_text("from app.sub import b\n")
    (app / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (app / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app import a\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert import_cycles(import_graph("app")) == [["app.a", "app.sub.b"]]


# ----------------------------------------------------------------------------- module size

MAX_MODULE_LINES = 600
NOT_SIZED = {"tests", "bench", "migrations", ".venv", "var", "node_modules"}
# Modules allowed past MAX_MODULE_LINES, each with why splitting it would not make it easier to read.
LONG_MODULES = {
    "devstack/nx_server.py": "the embedded MongoDB-protocol server's patches, one script run by path with python -I "
                             "(so that no module of the checkout can shadow its imports): it cannot import a sibling",
    "projects/edl/interchange/aaf.py": "one format's reader of AAF's object model without pyaaf2's layer: its file "
                                       "structure, mobs, slots and components refer to one another",
    "projects/edl/interchange/read.py": "the confined child's one entry: every format's shape checks beside its "
                                        "reader, which the bounds of one read hold together",
    "projects/edl/interchange/documents.py": "speed and volume in FCP7 XML, FCPXML and AAF, each format's writer "
                                             "beside its reader so that a round trip reads in one place",
}


def long_modules(root: Path = ROOT, limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """Modules of the product (not tests, benchmarks or migrations) over `limit` lines."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if NOT_SIZED.intersection(rel.parts):
            continue
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found[rel.as_posix()] = lines
    return found


def test_no_module_is_over_600_lines_but_those_listed_with_a_reason():
    long = long_modules()
    assert set(long) - set(LONG_MODULES) == set(), f"split them, or list them with a reason: {long}"
    assert set(LONG_MODULES) - set(long) == set(), "listed but no longer long: take them off the list"


def test_the_size_check_counts_lines_and_skips_tests(tmp_path: Path):
    (tmp_path / "app").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "app" / "big.py").write_text("x = 1\n" * 11)
    (tmp_path / "app" / "small.py").write_text("x = 1\n" * 10)
    (tmp_path / "tests" / "big.py").write_text("x = 1\n" * 50)
    assert long_modules(tmp_path, limit=10) == {"app/big.py": 11}


# ----------------------------------------------------------------------------- inside jobs/

# The jobs app read top to bottom: a module imports only its own layer and those below it
# (lazy imports inside functions count too).
JOBS_LAYERS = (
    {"apis", "batch_apis", "urls", "serializers", "prefer_header", "admin", "apps", "receivers", "tasks", "retention",
     "management"},
    {"intake"},  # admission, quotes, the result cache, submission, automatic transcription
    {"life"},  # a job's life from its claim to its end (its own order: jobs/life/__init__.py)
    {"events", "output_schema"},  # what a job tells: record, stream, webhooks, usage, schemas
    {"selectors"},
    {"specs"},
    {"inputs", "pricing", "payloads"},
    {"gpu_client", "errors", "failures", "task_names"},
    {"models"},
)


# The media app the same way; a part of a package may sit in a layer of its own ("probing.service",
# the probe of a processing file, is a service; what it runs, "probing.facts" and its sandbox, sits
# below every service).
MEDIA_LAYERS = (
    {"admin", "apps", "tasks", "voice_apis", "consent_apis", "voice_urls", "urls", "public_urls",
     "storage.local_views"},
    {"services", "probing.service"},
    {"probing.facts", "probing.sandbox", "hooks", "signals", "status", "storage", "task_names"},
    {"selectors"},
    {"errors", "consent_phrases"},
    {"models"},
)


def layer_of(module: str, app: str = "jobs", layers: tuple[set[str], ...] = JOBS_LAYERS) -> int | None:
    """The layer of `<app>.<part>...` by its longest listed prefix; None outside the app or for its package."""
    parts = module.split(".")
    if parts[0] != app or len(parts) < 2:
        return None
    for length in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[1:1 + length])
        found = next((n for n, layer in enumerate(layers) if prefix in layer), None)
        if found is not None:
            return found
    return None


def jobs_layer(module: str) -> int | None:
    return layer_of(module)


def upward_in(source: str, module: str, app: str = "jobs", layers: tuple[set[str], ...] = JOBS_LAYERS) -> list[str]:
    """The imports in `source` (the code of `module`) of a layer of `app` above the module's own."""
    own = layer_of(module, app, layers)
    found = []
    for node in ast.walk(_parse(source, "<unknown>")):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from jobs import life` names the layer in the imported name.
            names = [node.module] + ([f"{app}.{a.name}" for a in node.names] if node.module == app else [])
        else:
            continue
        for name in names:
            target = layer_of(name, app, layers)
            if own is not None and target is not None and target < own:
                found.append(f"{node.lineno} imports {name}")
    return found


def upward_imports(app: str = "jobs", layers: tuple[set[str], ...] = JOBS_LAYERS) -> list[str]:
    found = []
    for path in modules(app):
        rel = path.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        found += [f"{rel.as_posix()}:{where}" for where in upward_in(path.read_text(), module, app, layers)]
    return found


def test_every_module_of_jobs_has_a_layer():
    parts = {path.relative_to(ROOT / "jobs").parts[0].removesuffix(".py") for path in modules("jobs")}
    parts -= {"__init__", "templates"}
    assert parts - set().union(*JOBS_LAYERS) == set(), "give it a layer in JOBS_LAYERS"


def test_jobs_imports_only_downward():
    assert upward_imports() == []


def test_the_layer_check_sees_an_upward_import():
    assert jobs_layer("jobs") is None and jobs_layer("media.models") is None
    assert upward_in("from jobs.life.status import job_fail", "jobs.events.stream") == [
        "1 imports jobs.life.status"]
    assert upward_in("def f():\n    from jobs import intake", "jobs.life.outputs") == ["2 imports jobs.intake"]
    assert upward_in("from jobs.events import record\nfrom jobs.models import Job", "jobs.life.status") == []


def test_a_jobs_status_reaches_slots_and_fair_share_only_through_scheduling():
    names = {name for _line, name in imports(ROOT / "jobs/life/status.py")}
    assert not {n for n in names if n.startswith(("jobs.life.slots", "jobs.life.fairshare"))}, names
    assert "jobs.life.scheduling" in names or "jobs.life" in names


def test_every_module_of_media_has_a_layer_and_media_imports_only_downward():
    unplaced = [path.relative_to(ROOT).as_posix() for path in modules("media")
                if path.name != "__init__.py" and path.parent.name != "templates"
                and layer_of(".".join(path.relative_to(ROOT).with_suffix("").parts), "media", MEDIA_LAYERS) is None]
    assert unplaced == [], "give them a layer in MEDIA_LAYERS"
    assert upward_imports("media", MEDIA_LAYERS) == []
    assert upward_in("from media.services.keys import media_prefix", "media.probing.facts", "media", MEDIA_LAYERS)
