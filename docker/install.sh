#!/bin/sh
# How the production environment is installed: the one copy of these commands.
# The Dockerfile's builder stage runs it, and tests/test_deploy.py runs it into a fresh venv,
# so what the test proves (the lock has everything the job imports) is what the image gets.
#
#   install.sh deps VENV      create VENV, install requirements/prod.lock (hashes required, wheels only)
#   install.sh project VENV   add the project itself (its dependencies are already there: --no-deps), built
#                             with the setuptools of requirements/build.lock (hashed)
#
# Run it from the directory that holds pyproject.toml and requirements/. PYTHON picks the
# interpreter that creates the venv (default: python3).
#
# A private index or a TLS-intercepting proxy (docs/image.md): the Dockerfile mounts BuildKit secrets
# pip.conf and ca.pem under SECRETS_DIR (default /run/secrets); pip uses them when they are there.
set -eu

secrets=${SECRETS_DIR:-/run/secrets}
if [ -f "$secrets/pip.conf" ]; then
    export PIP_CONFIG_FILE="$secrets/pip.conf"
fi
if [ -f "$secrets/ca.pem" ]; then
    export PIP_CERT="$secrets/ca.pem"
fi

usage() {
    echo "usage: $0 deps|project VENV" >&2
    exit 2
}
[ "$#" -eq 2 ] || usage
phase=$1
venv=$2

case "$phase" in
deps)
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r requirements/prod.lock
    ;;
project)
    # The build backend from its own hashed lock, then the project built with it (no isolated build env,
    # which would fetch an unpinned setuptools).
    "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r requirements/build.lock
    "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation .
    # The job never runs pip or setuptools: leave them out of the image.
    "$venv/bin/python" -m pip uninstall --yes --disable-pip-version-check setuptools pip
    ;;
*)
    usage
    ;;
esac
