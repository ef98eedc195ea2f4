#!/usr/bin/env bash
# Quick start. `./dev.sh run`: set up and run the whole system in the foreground.
#              `./dev.sh test`: set up and run the test suite.
#              `./dev.sh ops ARGS`: the operators' CLI (`qa-ops ARGS`) of this checkout.
# Needs PostgreSQL and RabbitMQ on localhost (or QA_DATABASE_URL / QA_AMQP_URL set).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${QA_VENV:-.venv}"

bootstrap() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating virtualenv $VENV" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.qa-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "==> installing the project and its dependencies" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip >&2
        "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
        touch "$stamp"
    fi
}

case "${1:-}" in
    run)
        shift
        bootstrap
        echo "==> database: create if missing, apply migrations"
        "$VENV/bin/qa-ops" db upgrade
        exec "$VENV/bin/python" scripts/supervise.py "$@"
        ;;
    test)
        shift
        bootstrap
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    ops)
        shift
        bootstrap
        exec "$VENV/bin/qa-ops" "$@"
        ;;
    *)
        echo "usage: ./dev.sh run | ./dev.sh test [pytest args] | ./dev.sh ops [qa-ops args]" >&2
        exit 2
        ;;
esac
