#!/usr/bin/env bash
# Tempest, OpenStack's interoperability test suite, in a virtualenv of its own for the test suite
# (tests/compat/test_tempest.py runs its image API tests against a Keystone-protected Glimpse).
#
#   scripts/tempest-venv.sh    install it when missing or when the pins changed; print the
#                              virtualenv's path (its bin/ holds `tempest` and `stestr`)
#
# Tempest and every package it needs are pinned in scripts/tempest-requirements.txt and installed
# with the project's uv into .tools/tempest-venv: a virtualenv apart from .venv, because Tempest's
# own pins (oslo.*, cliff, ...) are not the product's. A few seconds from uv's cache.
#
# Environment:
#   GLIMPSE_TEST_TEMPEST_PYTHON   the interpreter uv builds the virtualenv with (default 3.11)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.tools/tempest-venv"
requirements="$repo_root/scripts/tempest-requirements.txt"
stamp="$venv/.requirements"
uv="$repo_root/.tools/bin/uv"

die() {
    echo "tempest-venv.sh: $*" >&2
    exit 1
}

usable() {
    [[ -x "$venv/bin/tempest" && -x "$venv/bin/stestr" ]] \
        && "$venv/bin/python" -I -c 'import tempest.cmd.main, subunit, testtools' 2>/dev/null
}

if usable && cmp -s "$requirements" "$stamp"; then
    echo "$venv"
    exit 0
fi

[[ -x "$uv" ]] || die "$uv is missing; run 'make install' first"
export UV_PYTHON_DOWNLOADS=never # the machine's Python, never a download
echo "tempest-venv.sh: installing Tempest (scripts/tempest-requirements.txt) into $venv" >&2
if [[ ! -x "$venv/bin/python" ]]; then
    "$uv" venv -q --python "${GLIMPSE_TEST_TEMPEST_PYTHON:-3.11}" "$venv" >&2 || die "could not create $venv"
fi
rm -f "$stamp"
"$uv" pip install -q --python "$venv/bin/python" -r "$requirements" >&2 \
    || die "could not install Tempest into $venv"
usable || die "Tempest is installed in $venv but 'tempest' or 'stestr' does not run"
cp "$requirements" "$stamp"
echo "$venv"
