#!/usr/bin/env bash
# Set up the project on a fresh Debian machine: uv (pinned, in its own venv), then .venv from uv.lock.
#   scripts/setup.sh            runtime + infra + lab + dev tools (everything the tests need)
#   scripts/setup.sh --system   also the Debian packages the tests use (PostgreSQL, Redis, nginx,
#                               chromium for the status page's browser tests: Playwright drives
#                               Debian's build and never downloads one of its own; and prometheus
#                               for promtool, which checks deploy/prometheus's alert rules)
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
if [[ "${1:-}" == "--system" ]]; then
    missing=()
    for pkg in postgresql redis-server nginx-light chromium prometheus; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "setup: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# Debian's python3 ships venv's ensurepip separately (python3-venv).
if ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    echo "setup: installing python3-venv (Debian splits it from python3)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

if [[ ! -x .uv/bin/uv ]] || [[ "$(.uv/bin/uv --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
    echo "setup: installing uv $UV_VERSION into .uv/"
    python3 -m venv .uv
    .uv/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# Byte-compile at install time: every hubctl start would otherwise pay for it (the tests run hubctl
# as a real process hundreds of times).
UV_COMPILE_BYTECODE=1 .uv/bin/uv sync --frozen --extra dev --quiet
echo "setup: .venv ready ($(.venv/bin/python --version))"
