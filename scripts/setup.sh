#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install aki into it.
#
#   bash scripts/setup.sh          aki and what `aki quickstart` needs (the analysis extra)
#   bash scripts/setup.sh --test   also every extra the test suite needs (dev tools, server, demo,
#                                  browser, toolkits); this is what CI runs
#
# Idempotent: a second run only re-checks the install (a stamp records what was installed).
# Uses PyPI and Debian's package archive only; nothing is fetched from a model or data hub.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
mode=core
extras="[analysis]"  # the quickstart draws its pictures with spaCy
for arg in "$@"; do
  case "$arg" in
    --test) mode=test; extras="[test]" ;;
    *) echo "setup.sh: error: unknown option $arg, use --test or nothing" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.aki-installed
want="$mode $(cat pyproject.toml scripts/setup*.sh | sha1sum | cut -d' ' -f1)"
have=$(cat "$stamp" 2>/dev/null || true)
# a test install also covers a later core run
if [ "$have" != "$want" ] && ! { [ "$mode" = core ] && [ "${have#test }" != "$have" ] && [ "${have#test }" = "${want#core }" ]; }; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extras"
  if [ "$mode" = test ]; then
    for extra_setup in scripts/setup-*.sh; do
      bash "$extra_setup"
    done
  fi
  echo "$want" > "$stamp"
fi
