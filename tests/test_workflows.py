"""The GitHub Actions workflows do what README.md's "Deploying" says, with pinned actions and
secrets by name only. (Their syntax and expressions are checked by actionlint in `make lint`.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
# owner/name@<40-hex commit>: a tag, even a full version, can be moved to other code by whoever
# controls the action's repository; a commit cannot. The version it is stays beside it as a comment.
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:- )?uses:\s*(\S+)(.*)$")
VERSION_COMMENT = re.compile(r"^\s+# v\d+\.\d+\.\d+$")
# Keys whose value is a credential: it must come from an expression, never be written out.
CREDENTIAL_KEY = re.compile(r"(password|token|secret|key|known_hosts)$", re.IGNORECASE)


def load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    on: dict[str, Any] = workflow[True]  # YAML 1.1 reads the key `on` as True
    return on


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def runs(workflow: dict[Any, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def mappings(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()] + [kv for v in node.values() for kv in mappings(v)]
    if isinstance(node, list):
        return [kv for item in node for kv in mappings(item)]
    return []


@pytest.mark.parametrize("name", ["ci.yml", "release.yml", "deploy.yml", "deploy-modal.yml"])
def test_actions_are_pinned_and_credentials_come_from_secrets(name):
    workflow = load(name)
    for step in steps(workflow):
        if "uses" in step:
            assert PINNED_ACTION.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a commit"
    for line in (WORKFLOWS / name).read_text().splitlines():
        match = USES_LINE.match(line)
        if match:
            assert VERSION_COMMENT.match(match.group(2)), f"{name}: {match.group(1)} needs its version as a comment"
    for key, value in mappings(workflow):
        if CREDENTIAL_KEY.search(key) and isinstance(value, str):
            assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", value), f"{name}: {key} is not a named secret"
    assert "permissions" in workflow, f"{name}: the token's permissions must be explicit"


def test_ci_runs_make_test():
    workflow = load("ci.yml")
    assert "make test" in runs(workflow)
    assert set(triggers(workflow)) == {"push", "pull_request"}


def test_release_pushes_the_dockerfile_image_to_ghcr_on_a_tag():
    workflow = load("release.yml")
    assert triggers(workflow)["push"]["tags"]
    build = next(step for step in steps(workflow) if step.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["push"] is True and build["with"]["file"] == "Dockerfile"
    assert (ROOT / build["with"]["file"]).is_file()
    login = next(step for step in steps(workflow) if step.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io"
    assert workflow["permissions"]["packages"] == "write"


def test_deploy_pulls_migrates_then_starts_over_ssh():
    workflow = load("deploy.yml")
    script = runs(workflow)
    assert "ssh " in script and "StrictHostKeyChecking=yes" in script
    order = [script.index(command) for command in
             ("python3 deploy/compose_secrets.py", "docker compose pull", "docker compose run --rm migrate",
              "docker compose up -d")]
    assert order == sorted(order)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "AUTEUR_IMAGE" in script and "${AUTEUR_IMAGE" in compose
    assert "migrate:" in compose
    assert triggers(workflow)["workflow_run"]["workflows"] == [load("release.yml")["name"]]


def test_deploy_ships_the_tags_compose_file_and_caddyfile_before_starting_them():
    """The host's deployment files are the release's, not whatever was copied there once: an image
    whose settings the compose file or the Caddyfile of another release does not give would not start,
    or would sign URLs for a name nobody serves."""
    workflow = load("deploy.yml")
    checkout = next(step for step in steps(workflow) if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["ref"] == "refs/tags/v${{ env.RELEASE }}"
    ship = next(step for step in steps(workflow) if "tar -czf -" in step.get("run", ""))["run"]
    listed = re.search(r"tar -czf - ([^|]+)\|", ship.replace("\\\n", " "))
    assert listed, ship
    shipped = set(listed[1].split())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # What compose reads from the host beside ./secrets (bind mounts), and what the host runs.
    host_files = {volume.split(":")[0].removeprefix("./") for service in compose["services"].values()
                  for volume in service.get("volumes", []) if volume.startswith("./")}
    assert host_files == {"Caddyfile"}
    assert {"docker-compose.yml", ".env.example", "deploy/compose_secrets.py", "deploy/redis_acl.py"} | host_files \
        <= shipped
    assert all((ROOT / path).is_file() for path in shipped)
    for path in shipped:
        assert "cp .release/\\$f \\$f" in ship and path in ship.split("for f in ", 1)[1], path
    script = runs(workflow)
    assert script.index("tar -czf -") < script.index("python3 deploy/compose_secrets.py")
    # A changed Caddyfile is loaded by the running Caddy, which keeps serving meanwhile.
    assert "caddy reload --config /etc/caddy/Caddyfile" in script


def test_deploy_modal_runs_when_gpu_tasks_change():
    workflow = load("deploy-modal.yml")
    assert "gpu_tasks/**" in triggers(workflow)["push"]["paths"]
    match = re.search(r"modal deploy (\S+)", runs(workflow))
    assert match and (ROOT / match.group(1)).is_file()
    env = next(step["env"] for step in steps(workflow) if "modal deploy" in step.get("run", ""))
    assert set(env) == {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}
