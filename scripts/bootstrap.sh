#!/usr/bin/env bash
# Everything a fresh Debian machine needs, idempotent: system packages, the
# Python venv with Lumenal and its dev tools, and a running PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LUMENAL_VENV:-.venv}
PY=${PYTHON:-python3.11}

APT_PKGS=(chromium chromium-driver dataset-fashion-mnist opencv-doc)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "bootstrap: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp="$VENV/.lumenal-installed"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
fi

# PostgreSQL: the labels store is tested against it as well as SQLite.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
echo "bootstrap: ready ($VENV)"
