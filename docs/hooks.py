"""MkDocs hooks: the tables that restate code are generated from it at every build.

A page asks for a table with a placeholder on a line of its own, replaced in `on_page_markdown`:

    <!-- table: job-types -->     every job type: gpu_tasks/types.py and jobs/specs.py
    <!-- table: settings -->      every environment variable the code reads, from its source
    <!-- table: error-codes -->   every error code the API answers, with its HTTP status
    <!-- table: workspace-roles --> every action of a workspace's members and the roles that may: auteur/users/roles.py
    <!-- table: key-scopes -->    every API key scope and the actions it allows: auteur/users/roles.py
    <!-- table: role-givers -->   every role and who may give it (by invitation or role change): auteur/users/roles.py

Settings and error codes are found by parsing the source (`ast`, and `tokenize` for the comments
above each read), so a setting or a code added anywhere appears without an edit here. Job types
need the jobs app's specs (prices, plans), so Django is set up with stand-in URLs and debug on:
nothing is connected to and no secret is needed to build the site.
"""

from __future__ import annotations

import ast
import io
import os
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"^<!-- table: ([a-z-]+) -->$", re.MULTILINE)

# Where settings are read: the code that runs (apps, the embedded stack, the GPU side, the demo)
# and the benchmarks' settings module; not tests, benchmarks' scripts or this site.
SETTINGS_SOURCES = ("auteur", "billing", "credits", "jobs", "media", "projects", "realtime", "webhooks",
                    "metrics_exporter", "gpu_tasks", "devstack", "scripts", "celeryconfig.py", "manage.py",
                    "bench/settings.py")
# The proxy's configuration reads variables too: {$NAME:default}.
CADDYFILE = "Caddyfile"
# Environment variables of the operating system, read by the code but set by no operator.
NOT_SETTINGS = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "USER"})
# Where API error codes are raised: the Django apps (the GPU side's codes are job failures).
ERROR_SOURCES = ("auteur", "billing", "credits", "jobs", "media", "projects", "realtime", "webhooks",
                 "metrics_exporter")


def python_files(sources: tuple[str, ...]) -> Iterator[Path]:
    for source in sources:
        path = ROOT / source
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*.py")):
            if "migrations" not in file.parts and "__pycache__" not in file.parts:
                yield file


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


# ----------------------------------------------------------------------------- settings


@dataclass
class Setting:
    name: str
    kind: str
    default: str
    comment: str
    files: list[str] = field(default_factory=list)


# How each reader of auteur/settings/ (and django-environ's Env) treats a missing variable.
_SETTINGS_READERS = {
    "env_value": ("secret", "unset"),
    "secret": ("secret", "required in production"),
    "signing_secret": ("secret", "required in production (checked)"),
    "required": ("url", "required"),
}
_ENV_TYPES = {"str", "int", "bool", "float", "list", "dict", "json", "url", "db_url", "path", "tuple"}


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line (without '#')."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _block_above(lines: list[str], comments: dict[int, str], line: int) -> str:
    """The comment lines directly above `line` (1-based), joined: the block that explains it."""
    block: list[str] = []
    number = line - 1
    while number >= 1 and lines[number - 1].strip().startswith("#") and number in comments:
        text = comments[number]
        heading = text.startswith("---")
        text = text.lstrip("- ").strip()
        if text:
            block.insert(0, text)
        if heading:
            break
        number -= 1
    return " ".join(block).strip()


def _is_os_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os")


def _is_environment(node: ast.expr) -> bool:
    """`os.environ`, or a mapping named like one (the embedded stack passes copies of it around)."""
    return _is_os_environ(node) or (isinstance(node, ast.Name) and node.id in {"environ", "env", "environment"})


class _SettingsReads(ast.NodeVisitor):
    """Every read of an environment variable in one module: (name, kind, default, node)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.constants: dict[str, str] = {}
        self.reads: list[tuple[str, str, str, ast.AST]] = []

    def literal(self, node: ast.expr | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None

    def default(self, node: ast.expr | None) -> str:
        if node is None:
            return "unset"
        if isinstance(node, ast.Constant) and node.value in ("", None):
            return "unset"
        return ast.get_source_segment(self.source, node) or "unset"

    def visit_Module(self, node: ast.Module) -> None:
        for statement in node.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                    and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)):
                self.constants[statement.targets[0].id] = statement.value.value
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        first = node.args[0] if node.args else None
        name = self.literal(first)
        keywords = {k.arg: k.value for k in node.keywords}
        second = node.args[1] if len(node.args) > 1 else keywords.get("default")
        if name is not None:
            if isinstance(func, ast.Name) and func.id in _SETTINGS_READERS:
                kind, default = _SETTINGS_READERS[func.id]
                self.reads.append((name, kind, default, node))
            elif isinstance(func, ast.Name) and func.id == "is_set":
                pass  # is_set(env, NAME): the name is the second argument (below)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env" \
                    and func.attr in _ENV_TYPES:
                self.reads.append((name, func.attr, self.default(second), node))
            elif isinstance(func, ast.Attribute) and (
                    (func.attr in {"get", "pop"} and _is_environment(func.value))
                    or (func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")):
                self.reads.append((name, "str", self.default(second), node))
        if isinstance(func, ast.Name) and func.id == "is_set" and len(node.args) == 2:
            other = self.literal(node.args[1])
            if other is not None:
                self.reads.append((other, "str", "unset", node))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        name = self.literal(node.slice)
        if name is not None and isinstance(node.ctx, ast.Load) and _is_os_environ(node.value):
            self.reads.append((name, "str", "required", node))
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        name = self.literal(node.left)
        if name is not None and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)) \
                and _is_environment(node.comparators[0]):
            self.reads.append((name, "flag", "unset", node))
        self.generic_visit(node)


def _enclosing_statements(tree: ast.Module) -> dict[int, list[ast.stmt]]:
    """id(node) -> the statements that contain it, outermost first."""
    chains: dict[int, list[ast.stmt]] = {}

    def walk(node: ast.AST, chain: list[ast.stmt]) -> None:
        for child in ast.iter_child_nodes(node):
            here = [*chain, child] if isinstance(child, ast.stmt) else chain
            chains[id(child)] = here
            walk(child, here)

    walk(tree, [])
    return chains


def settings_table_rows() -> list[Setting]:
    """Every environment variable the code reads, in the order of the source (settings first)."""
    found: dict[str, Setting] = {}

    def add(name: str, kind: str, default: str, comment: str, where: str) -> None:
        if name in NOT_SETTINGS or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            return
        setting = found.setdefault(name, Setting(name, kind, default, comment))
        if setting.default in ("unset", "required") and default not in ("unset", "required"):
            setting.default = default
        if not setting.comment:
            setting.comment = comment
        if where not in setting.files:
            setting.files.append(where)

    # The settings package first (its environment module, then its concerns by name), then the rest.
    package = ROOT / "auteur" / "settings"
    secrets_module = package / "environment.py"
    settings_files = [secrets_module, *sorted(f for f in package.glob("*.py") if f not in (secrets_module,))]
    files = [*settings_files, *(f for f in python_files(SETTINGS_SOURCES) if f not in settings_files)]
    secret_names: tuple[list[str], str, str] | None = None
    for file in files:
        source = file.read_text()
        tree = ast.parse(source)
        lines = source.splitlines()
        comments = _comments(source)
        chains = _enclosing_statements(tree)
        reads = _SettingsReads(source)
        reads.visit(tree)
        where = str(file.relative_to(ROOT))
        for name, kind, default, node in reads.reads:
            line = getattr(node, "lineno", 0)
            comment = comments.get(line, "") if lines[line - 1].rstrip().endswith(comments.get(line, "\0")) else ""
            comment = comment or _block_above(lines, comments, line)
            for statement in reversed(chains.get(id(node), [])):
                if comment:
                    break
                comment = _block_above(lines, comments, statement.lineno)
            add(name, kind, default, comment, where)
        if file == secrets_module:
            # Secrets read in a loop over SECRET_NAMES (those libraries take from the environment):
            # named once the whole package is read, so a secret read in its own module keeps its comment.
            for statement in tree.body:
                if isinstance(statement, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == "SECRET_NAMES" for t in statement.targets):
                    secret_names = ([e.value for e in ast.walk(statement.value)
                                     if isinstance(e, ast.Constant) and isinstance(e.value, str)],
                                    _block_above(lines, comments, statement.lineno), where)
        if file == settings_files[-1] and secret_names:
            names, comment, secrets_where = secret_names
            for name in names:
                if name in found:
                    found[name].kind = "secret"
                else:
                    add(name, "secret", "unset", comment, secrets_where)
    caddy_lines = (ROOT / CADDYFILE).read_text().splitlines()
    for number, line in enumerate(caddy_lines, start=1):
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\{\$([A-Z][A-Z0-9_]*)(?::([^}]*))?\}", line):
            above = {n: text.lstrip().lstrip("#").strip() for n, text in enumerate(caddy_lines, start=1)
                     if text.lstrip().startswith("#")}
            add(match.group(1), "str", match.group(2) or "unset", _block_above(caddy_lines, above, number), CADDYFILE)
    return list(found.values())


def settings_table() -> str:
    rows = ["| variable | type | default | read in | what the code says of it |", "| --- | --- | --- | --- | --- |"]
    for s in settings_table_rows():
        files = ", ".join(code(f) for f in s.files)
        rows.append(f"| {code(s.name)} | {s.kind} | {cell(code(s.default))} | {files} | {cell(s.comment)} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- error codes


@dataclass
class ErrorCode:
    code: str
    statuses: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


_STATUS_NAME = re.compile(r"HTTP_(\d{3})_")


def _status_of(node: ast.expr | None) -> int | None:
    """A status written as 404 or status.HTTP_404_NOT_FOUND."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Attribute) and (match := _STATUS_NAME.match(node.attr)):
        return int(match.group(1))
    return None


def _drf_statuses() -> dict[str, int]:
    """DRF exception class name -> its status (DRF's own table, read without Django settings)."""
    from rest_framework import exceptions

    return {name: int(getattr(cls, "status_code", 400)) for name, cls in vars(exceptions).items()
            if isinstance(cls, type) and issubclass(cls, exceptions.APIException)}


def error_table_rows() -> list[ErrorCode]:
    """Every code the API's errors carry, found in the source:

    - the table of statuses (`HTTP_STATUS` in auteur/core/errors.py, its comments as notes), the
      server-side failures' sentences (`SERVER_FAILURES`) and DRF's exceptions' codes (`_DRF_CODES`);
    - each `ApplicationError` subclass's `code` and every `code="..."` given to an error's constructor;
    - each `error_body(...)` / `error_response(status, "code", ...)` written by hand;
    - the codes the OpenAPI schema adds by itself (auteur/core/schema.py) and those views declare (`@raises`).

    A code's status is `HTTP_STATUS`'s, else the one written beside it, else 400 (`http_status`).
    """
    found: dict[str, ErrorCode] = {}
    http_status: dict[str, int] = {}
    domain: set[str] = set()  # codes of ApplicationErrors: answered with http_status(code)

    def add(code_: str, where: str, status: int | None = None, note: str = "") -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", code_):
            return
        entry = found.setdefault(code_, ErrorCode(code_))
        if status is not None:
            entry.statuses.add(status)
        if note and note not in entry.notes:
            entry.notes.append(note)
        if where not in entry.files:
            entry.files.append(where)

    drf = _drf_statuses()
    # Exceptions that take their code first (`SignatureInvalid("url_expired", message)`), and the
    # status of the `error_response(status, exc.code, ...)` that answers each where it is caught.
    code_first: dict[str, set[int]] = {}
    trees = {file: ast.parse(file.read_text()) for file in python_files(ERROR_SOURCES)}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__" \
                            and [a.arg for a in item.args.args[1:2]] == ["code"]:
                        code_first.setdefault(node.name, set())
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Name) \
                    and node.type.id in code_first:
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) \
                            and inner.func.id == "error_response" and len(inner.args) >= 2 \
                            and isinstance(inner.args[1], ast.Attribute) and inner.args[1].attr == "code" \
                            and (status := _status_of(inner.args[0])) is not None:
                        code_first[node.type.id].add(status)
    for file in python_files(ERROR_SOURCES):
        source = file.read_text()
        tree = ast.parse(source)
        comments = _comments(source)
        where = str(file.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                table = target.id if isinstance(target, ast.Name) else ""
                if table == "HTTP_STATUS":
                    group = ""
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                            continue
                        above = comments.get(key.lineno - 1, "")
                        group = above.split(":", 1)[1].strip() if re.match(r"\d{3}", above) and ":" in above \
                            else group
                        status = _status_of(value)
                        if status is not None:
                            http_status[key.value] = status
                        add(key.value, where, status, comments.get(key.lineno, "") or group)
                elif table == "SERVER_FAILURES":
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if isinstance(key, ast.Constant) and isinstance(value, ast.Call) and value.args \
                                and isinstance(value.args[0], ast.Constant):
                            add(str(key.value), where, None, f"Clients read: \"{value.args[0].value!s}\"")
                elif table == "_DRF_CODES":
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if isinstance(key, ast.Attribute) and isinstance(value, ast.Constant):
                            add(str(value.value), where, drf.get(key.attr), f"DRF's {key.attr}")
                elif node.value.keys and all(
                        isinstance(k, ast.Constant) and isinstance(k.value, int) for k in node.value.keys):
                    # {status: (code, message)}: what a bare status is answered with (auteur/middleware.py).
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if isinstance(value, ast.Tuple) and value.elts and isinstance(value.elts[0], ast.Constant) \
                                and isinstance(key, ast.Constant):
                            message = value.elts[1] if len(value.elts) > 1 else None
                            note = f"Clients read: \"{message.value!s}\"" if isinstance(message, ast.Constant) else ""
                            add(str(value.elts[0].value), where, int(str(key.value)), note)
                elif table == "NOT_FOUND_CODES":
                    for value in node.value.values:
                        if isinstance(value, ast.Constant):
                            add(str(value.value), where)
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    assigned: ast.expr | None = None
                    literal: ast.expr | None = None
                    if isinstance(statement, ast.Assign) and statement.targets:
                        assigned, literal = statement.targets[0], statement.value
                    elif isinstance(statement, ast.AnnAssign):
                        assigned, literal = statement.target, statement.value
                    if isinstance(assigned, ast.Name) and assigned.id == "code" and isinstance(literal, ast.Constant) \
                            and isinstance(literal.value, str):
                        add(literal.value, where, None, (ast.get_docstring(node) or "").split("\n\n")[0])
                        domain.add(literal.value)
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                keywords = {k.arg: k.value for k in node.keywords}
                if name.endswith(("Error", "Exceeded")) or name[:1].isupper():
                    given = keywords.get("code")
                    if isinstance(given, ast.Constant) and isinstance(given.value, str):
                        add(given.value, where)
                        domain.add(given.value)
                if name in code_first and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant) \
                        and isinstance(node.args[1], ast.Constant):
                    for status in code_first[name] or {400}:
                        add(str(node.args[0].value), where, status, f"Clients read: \"{node.args[1].value!s}\"")
                if name == "error_response" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    add(str(node.args[1].value), where, _status_of(node.args[0]))
                elif name == "error_body" and node.args and isinstance(node.args[0], ast.Constant):
                    add(str(node.args[0].value), where)
                elif name == "raises":
                    for argument in node.args:
                        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                            add(argument.value, where)
            elif isinstance(node, ast.Tuple) and where == "auteur/core/schema.py":
                # BODY_CODES and AUTHENTICATION_CODES: (status, code) pairs, or codes of a 401.
                elements = node.elts
                if len(elements) == 2 and isinstance(elements[1], ast.Constant) \
                        and (status := _status_of(elements[0])) is not None:
                    add(str(elements[1].value), where, status)
        for node in ast.walk(tree):
            # A Response(error_body("code", ...), status=...) written by hand: its status is beside it.
            if isinstance(node, ast.Call) and any(k.arg == "status" for k in node.keywords) and node.args:
                body = node.args[0]
                if isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id == "error_body" \
                        and body.args and isinstance(body.args[0], ast.Constant):
                    status = _status_of(next(k.value for k in node.keywords if k.arg == "status"))
                    add(str(body.args[0].value), where, status)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and any(
                    isinstance(t, ast.Name) and t.id == "AUTHENTICATION_CODES" for t in node.targets):
                for element in node.value.elts:
                    if isinstance(element, ast.Constant):
                        add(str(element.value), where, 401)
    for entry in found.values():
        if entry.code in http_status or entry.code in domain or not entry.statuses:
            entry.statuses.add(http_status.get(entry.code, 400))
    return sorted(found.values(), key=lambda e: (min(e.statuses), e.code))


def error_table() -> str:
    rows = ["| code | HTTP status | what it means | raised in |", "| --- | --- | --- | --- |"]
    for entry in error_table_rows():
        statuses = ", ".join(str(s) for s in sorted(entry.statuses))
        files = ", ".join(code(f) for f in entry.files[:4]) + (", ..." if len(entry.files) > 4 else "")
        rows.append(f"| {code(entry.code)} | {statuses} | {cell('; '.join(entry.notes))} | {files} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- job types


def _django() -> None:
    """Django set up as for a lint: stand-in URLs, debug on (no secret), no .env, nothing connected."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django
    from django.apps import apps

    if apps.ready:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("AUTEUR_ENV_FILE", "")
    os.environ.setdefault("DATABASE_URL", "postgres://docs@127.0.0.1:1/docs")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")
    os.environ.setdefault("MONGODB_URI", "mongodb://127.0.0.1:1/docs")
    django.setup()


def job_type_table() -> str:
    _django()
    from jobs.inputs import JobInput
    from jobs.specs import JOB_SPECS

    base: list[str] = [str(name) for name in JobInput().fields]
    common = ", ".join(code(name) for name in base)
    rows = [f"Every type takes {common} beside its own inputs ([Jobs](jobs.md)).", "",
            "| type | what it does | model (Modal) | local backend | inputs (beside the common fields) "
            "| price | plan | GPU | time limit | at once | cached | engine version |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for job_type, spec in JOB_SPECS.items():
        engine = spec.engine
        own = [str(name) for name in spec.input().fields if name not in base]
        inputs = ", ".join(code(name) for name in own)
        local = engine.local_model or ("the same" if engine.local else "not run locally")
        rows.append(
            f"| {code(job_type.value)} | {cell(spec.description)} | {cell(engine.model)} | {cell(local)} | {inputs} "
            f"| {cell(spec.price.describe())} | {spec.plan or 'any'} | {engine.gpu.value} | {engine.time_limit_s} s "
            f"| {engine.max_concurrency} | {engine.determinism.value} | {engine.version} |"
        )
    return "\n".join(rows)


def workspace_role_table() -> str:
    _django()
    from auteur.users.roles import ACTIONS, Role

    rows = ["| action | what it is | " + " | ".join(role.value for role in Role) + " |",
            "| --- | --- | " + " | ".join("---" for _ in Role) + " |"]
    for action in ACTIONS.values():
        marks = " | ".join("yes" if role in action.roles else "" for role in Role)
        rows.append(f"| {code(action.name)} | {cell(action.description)} | {marks} |")
    return "\n".join(rows)


def role_giver_table() -> str:
    _django()
    from auteur.users.roles import GIVING, Role, givers

    rows = ["| role | given by | what giving it takes, beside `members.invite` or `members.set_role` |",
            "| --- | --- | --- |"]
    for role in Role:
        takes = ", ".join(code(action) for action in GIVING[role]) or "nothing more"
        rows.append(f"| {code(role.value)} | {', '.join(code(r.value) for r in givers(role))} | {takes} |")
    return "\n".join(rows)


def key_scope_table() -> str:
    _django()
    from auteur.users.roles import ACTIONS, SCOPES, scope_allows

    rows = ["| scope | allows |", "| --- | --- |"]
    for scope in SCOPES:
        actions = [code(a.name) for a in ACTIONS.values() if a.scope not in (None, "*")
                   and scope_allows(frozenset({scope}), a.name)]
        rows.append(f"| {code(scope)} | {', '.join(actions)} |")
    every = [code(a.name) for a in ACTIONS.values() if a.scope == "*"]
    rows.append(f"| (any key) | {', '.join(every)} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- the hook

TABLES = {"job-types": job_type_table, "settings": settings_table, "error-codes": error_table,
          "workspace-roles": workspace_role_table, "key-scopes": key_scope_table, "role-givers": role_giver_table}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def table(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"{page.file.src_path}: no generated table called {name!r} (known: {sorted(TABLES)})")
        return TABLES[name]()

    return PLACEHOLDER.sub(table, markdown)
