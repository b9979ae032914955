#!/usr/bin/env bash
# Lints what ruff and yamllint do not: shell scripts and Dockerfiles. ansible-lint (production
# profile) runs as a test in tests/ansible/test_roles.py, in parallel with the other tests.
# Usage: lint-extra.sh VENV_BIN
set -euo pipefail
bin=$1

mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
if [ ${#scripts[@]} -gt 0 ]; then
  "$bin/shellcheck" "${scripts[@]}"
fi

mapfile -t dockerfiles < <(git ls-files '*Dockerfile*' '*.dockerfile')
if [ ${#dockerfiles[@]} -gt 0 ]; then
  "$bin/hadolint" "${dockerfiles[@]}"
fi
