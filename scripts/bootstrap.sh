#!/usr/bin/env bash
# Install everything the developer loop needs, from the project's own files:
#   1. uv, pinned, in a private virtualenv at <repo>/.tools (git-ignored);
#   2. the locked dependencies (runtime + dev group) into <repo>/.venv via `uv sync --frozen`.
#
# Idempotent and quiet when there is nothing to do; safe to run from any directory.
# Needs only `python3` (>= 3.11) and access to PyPI.
set -euo pipefail

UV_VERSION="0.13.9"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

uv=".tools/bin/uv"

uv_is_pinned() {
    [[ -x "$uv" ]] || return 1
    local version
    version="$("$uv" --version 2>/dev/null)" || return 1
    [[ "$version" == "uv $UV_VERSION" || "$version" == "uv $UV_VERSION "* ]]
}

if ! uv_is_pinned; then
    echo "bootstrap: installing uv==$UV_VERSION into .tools/" >&2
    if ! command -v python3 >/dev/null 2>&1; then
        echo "bootstrap: python3 not found on PATH (need Python >= 3.11)" >&2
        exit 1
    fi
    # --clear rebuilds a half-created or stale .tools from scratch.
    python3 -m venv --clear .tools
    .tools/bin/python -m pip install --quiet --disable-pip-version-check --no-input "uv==$UV_VERSION"
    if ! uv_is_pinned; then
        echo "bootstrap: .tools/bin/uv is not uv $UV_VERSION after install" >&2
        exit 1
    fi
fi

# Never let uv fetch a Python build of its own: the machine's python3 is the interpreter,
# and a download attempt would only turn a clear error into a network error.
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"

# --frozen: install exactly what uv.lock says, without re-resolving.
"$uv" sync --frozen --quiet
