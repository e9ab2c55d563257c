"""deploy/host/provision.sh, the single VPS's provisioning: shellcheck finds nothing in it, and a dry
run over a folder standing in for the machine's root shows what it would do and writes there: the
firewall open on 22 (rate-limited), 80 and 443 only, SSH by key only, Fail2Ban on SSH, security
updates unattended, .env and the secrets folder the deploy user's alone; a second run changes
nothing; another system, no key, or a malformed key is refused before anything is changed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "host" / "provision.sh"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTestsOnly0000000000000000000 ci@auteur"


def shellcheck() -> str:
    found = Path(sys.executable).parent / "shellcheck"
    return str(found) if found.exists() else shutil.which("shellcheck") or "shellcheck"


UBUNTU = 'ID=ubuntu\nVERSION_ID="24.04"\n'


def provision(root: Path, release: str = UBUNTU, **env: str) -> subprocess.CompletedProcess[str]:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "os-release").write_text(release)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "AUTEUR_PROVISION_ROOT": str(root), "AUTEUR_PROVISION_DRY_RUN": "1",
                               "DEPLOY_USER": "auteur", "DEPLOY_PATH": "/srv/auteur", **env})


def commands(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.removeprefix("would run: ") for line in result.stdout.splitlines() if line.startswith("would run: ")]


def test_shellcheck_finds_nothing():
    result = subprocess.run([shellcheck(), "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_dry_run_opens_only_ssh_http_and_https_and_hardens_ssh(tmp_path):
    (tmp_path / "srv" / "auteur" / "secrets").mkdir(parents=True)
    (tmp_path / "srv" / "auteur" / "secrets" / "DJANGO_SECRET_KEY").write_text("x" * 50)
    result = provision(tmp_path, DEPLOY_KEY=KEY)
    assert result.returncode == 0, result.stderr
    ran = commands(result)
    assert [c for c in ran if c.startswith("ufw ")] == [
        "ufw default deny incoming", "ufw default allow outgoing", "ufw limit 22/tcp", "ufw allow 80/tcp",
        "ufw allow 443/tcp", "ufw allow 443/udp", "ufw --force enable"]
    installed = next(c for c in ran if " install " in c).split()
    assert {"ufw", "fail2ban", "unattended-upgrades", "docker.io", "docker-compose-v2"} <= set(installed)
    assert "usermod --append --groups docker auteur" in ran and "systemctl enable --now docker" in ran

    sshd = (tmp_path / "etc/ssh/sshd_config.d/50-auteur.conf").read_text()
    assert re.search(r"^PasswordAuthentication no$", sshd, re.M) and re.search(r"^PermitRootLogin prohibit-password$",
                                                                               sshd, re.M)
    jail = (tmp_path / "etc/fail2ban/jail.d/auteur-sshd.local").read_text()
    assert "[sshd]" in jail and "enabled = true" in jail
    assert 'Unattended-Upgrade "1"' in (tmp_path / "etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert (tmp_path / "home/auteur/.ssh/authorized_keys").read_text() == KEY + "\n"

    def mode(path: str) -> int:
        return (tmp_path / path).stat().st_mode & 0o777

    assert mode("home/auteur/.ssh/authorized_keys") == 0o600
    assert (mode("srv/auteur"), mode("srv/auteur/secrets"), mode("srv/auteur/.env")) == (0o750, 0o700, 0o600)
    # Readable by the containers' users through their mounts; the 0700 folder keeps the host's out.
    assert mode("srv/auteur/secrets/DJANGO_SECRET_KEY") == 0o444


def test_a_second_run_changes_nothing(tmp_path):
    first = provision(tmp_path, DEPLOY_KEY=KEY)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = provision(tmp_path, DEPLOY_KEY=KEY)
    assert first.returncode == again.returncode == 0, again.stderr
    assert "wrote" in first.stdout and "wrote" not in again.stdout
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    # No service is reloaded for a file that did not change; the idempotent commands run again.
    assert "systemctl reload ssh" in commands(first) and "systemctl reload ssh" not in commands(again)
    assert "systemctl restart fail2ban" not in commands(again) and "ufw --force enable" in commands(again)


@pytest.mark.parametrize(("release", "env", "says"), [
    ('ID=debian\nVERSION_ID="12"\n', {"DEPLOY_KEY": KEY}, "this machine is debian 12"),
    ('ID=ubuntu\nVERSION_ID="23.10"\n', {"DEPLOY_KEY": KEY}, "this machine is ubuntu 23.10"),
    ('ID=ubuntu\nVERSION_ID="24.04"\n', {}, "no SSH key for auteur"),
    ('ID=ubuntu\nVERSION_ID="24.04"\n', {"DEPLOY_KEY": "hunter2; rm -rf /"}, "DEPLOY_KEY is not an SSH public key"),
])
def test_it_stops_before_locking_anyone_out_or_touching_another_system(tmp_path, release, env, says):
    result = provision(tmp_path, release, **env)
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert commands(result) == [] and [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["os-release"]
