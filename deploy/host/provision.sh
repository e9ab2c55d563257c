#!/usr/bin/env bash
# Provisions the one VPS that runs docker-compose.yml: Ubuntu LTS with security updates applied
# unattended, a firewall open on SSH, HTTP and HTTPS only, SSH keys only with Fail2Ban behind it,
# Docker with Compose, and the deploy user whose folder holds .env and the secret files, readable
# by that user alone. Run it as root on a fresh machine, and again at any time: every step leaves
# what is already right as it is.
#
#   sudo DEPLOY_KEY="ssh-ed25519 AAAA... ci@auteur" ./provision.sh
#
# DEPLOY_USER (auteur) is the user .github/workflows/deploy.yml logs in as; DEPLOY_PATH
# (/srv/auteur) is the folder its DEPLOY_PATH secret names; DEPLOY_KEY is the public half of its
# DEPLOY_SSH_KEY (needed the first time: password logins are turned off, so without a key for the
# deploy user the script stops rather than lock everyone out).
#
# For the tests (tests/test_host_provisioning.py): AUTEUR_PROVISION_ROOT writes every file under
# that folder instead of /, and AUTEUR_PROVISION_DRY_RUN=1 prints each command instead of running it.
set -euo pipefail

ROOT="${AUTEUR_PROVISION_ROOT:-}"
DRY_RUN="${AUTEUR_PROVISION_DRY_RUN:-0}"
DEPLOY_USER="${DEPLOY_USER:-auteur}"
DEPLOY_PATH="${DEPLOY_PATH:-/srv/auteur}"
DEPLOY_KEY="${DEPLOY_KEY:-}"
# The LTS releases this script is written for.
SUPPORTED_RELEASES="22.04 24.04"

say() { printf 'provision: %s\n' "$*"; }
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }

# A command that changes the machine: run it, or print it in a dry run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf 'would run: %s\n' "$*"
  else
    "$@"
  fi
}

# put PATH MODE: standard input becomes the file ROOT/PATH with MODE, written only when its
# content differs. CHANGED says whether it was (so a service restarts only for a real change).
CHANGED=0
put() {
  local path="$ROOT$1" mode="$2" tmp
  tmp="$(mktemp)"
  cat > "$tmp"
  mkdir -p "$(dirname "$path")"
  if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
    CHANGED=0
    rm -f "$tmp"
  else
    CHANGED=1
    install -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
    say "wrote $1"
  fi
  chmod "$mode" "$path"
}

check_os() {
  local id="" version=""
  [[ -r "$ROOT/etc/os-release" ]] || die "no /etc/os-release: this is for Ubuntu LTS ($SUPPORTED_RELEASES)"
  # shellcheck disable=SC1091 # the machine's own file, read in a subshell
  read -r id version < <(. "$ROOT/etc/os-release" && printf '%s %s\n' "${ID:-}" "${VERSION_ID:-}")
  [[ "$id" == ubuntu && " $SUPPORTED_RELEASES " == *" $version "* ]] \
    || die "this machine is ${id:-unknown} ${version:-?}; this script is for Ubuntu LTS ($SUPPORTED_RELEASES)"
  say "Ubuntu $version"
}

# Everything that can stop the run is checked before anything is changed.
KEYS="/home/$DEPLOY_USER/.ssh/authorized_keys"
preflight() {
  if [[ -n "$DEPLOY_KEY" ]]; then
    [[ "$DEPLOY_KEY" =~ ^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa)\ [A-Za-z0-9+/=]+(\ [^\;\&\|\`\$]*)?$ ]] \
      || die "DEPLOY_KEY is not an SSH public key (ssh-ed25519 AAAA... comment)"
  elif [[ ! -s "$ROOT$KEYS" ]]; then
    die "no SSH key for $DEPLOY_USER ($KEYS): give DEPLOY_KEY, or turning password logins off would lock you out"
  fi
}

packages() {
  run apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold upgrade
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    ufw fail2ban unattended-upgrades ca-certificates docker.io docker-compose-v2
}

security_updates() {
  put /etc/apt/apt.conf.d/20auto-upgrades 0644 <<'EOF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
EOF
}

deploy_user() {
  if ! id "$DEPLOY_USER" > /dev/null 2>&1; then
    run useradd --create-home --shell /bin/bash --user-group "$DEPLOY_USER"
  fi
  run usermod --append --groups docker "$DEPLOY_USER"
  if [[ -n "$DEPLOY_KEY" ]]; then
    printf '%s\n' "$DEPLOY_KEY" | put "$KEYS" 0600
    run chown -R "$DEPLOY_USER:$DEPLOY_USER" "/home/$DEPLOY_USER/.ssh"
  fi
  # The compose project: .env and the secrets folder are the deploy user's alone. The secret files
  # (deploy/compose_secrets.py) are 0444 inside the 0700 folder: the containers' users (postgres,
  # redis, the app's) read them through their mounts, and nobody else on the host reaches them.
  mkdir -p "$ROOT$DEPLOY_PATH/secrets"
  chmod 0750 "$ROOT$DEPLOY_PATH"
  chmod 0700 "$ROOT$DEPLOY_PATH/secrets"
  [[ -e "$ROOT$DEPLOY_PATH/.env" ]] || : > "$ROOT$DEPLOY_PATH/.env"
  chmod 0600 "$ROOT$DEPLOY_PATH/.env"
  local file
  for file in "$ROOT$DEPLOY_PATH"/secrets/*; do
    [[ -f "$file" ]] && chmod 0444 "$file"
  done
  run chown -R "$DEPLOY_USER:$DEPLOY_USER" "$DEPLOY_PATH"
}

ssh_keys_only() {
  put /etc/ssh/sshd_config.d/50-auteur.conf 0644 <<'EOF'
# provision.sh: keys only; root by key only; few tries per connection (Fail2Ban bans the rest).
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxAuthTries 3
EOF
  if [[ "$CHANGED" == 1 ]]; then
    run sshd -t
    run systemctl reload ssh
  fi
}

fail2ban() {
  put /etc/fail2ban/jail.d/auteur-sshd.local 0644 <<'EOF'
# provision.sh: five failed SSH logins within ten minutes ban the address for an hour.
[sshd]
enabled = true
port = ssh
backend = systemd
maxretry = 5
findtime = 10m
bantime = 1h
EOF
  run systemctl enable --now fail2ban
  if [[ "$CHANGED" == 1 ]]; then
    run systemctl restart fail2ban
  fi
}

firewall() {
  # Docker publishes ports through its own iptables rules, ahead of UFW's: docker-compose.yml
  # therefore publishes only Caddy's 80 and 443 beyond loopback (tests/test_compose.py holds it).
  # The object store is one of Caddy's sites (AUTEUR_MEDIA_DOMAIN) on those same ports.
  run ufw default deny incoming
  run ufw default allow outgoing
  run ufw limit 22/tcp
  run ufw allow 80/tcp
  run ufw allow 443/tcp
  run ufw allow 443/udp
  run ufw --force enable
}

[[ "$DRY_RUN" == 1 || "$(id -u)" == 0 ]] || die "run it as root (sudo)"
check_os
preflight
packages
security_updates
deploy_user
ssh_keys_only
fail2ban
firewall
run systemctl enable --now docker
say "done: firewall on 22 (rate-limited), 80, 443; SSH by key; Fail2Ban; security updates unattended."
say "next: DNS records for AUTEUR_DOMAIN and AUTEUR_MEDIA_DOMAIN (the object store's name) to this host;"
say "      as $DEPLOY_USER, write $DEPLOY_PATH/.env and $DEPLOY_PATH/secrets/AUTEUR_JWT_SECRET; then deploy.yml"
say "      ships the release's files there and makes the other secrets (docs/deploying.md)."
