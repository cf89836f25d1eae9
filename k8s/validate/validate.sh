#!/usr/bin/env bash
# Validate the Helm chart (k8s/proact) without a cluster: lint, render with every values
# file, Kubernetes schema validation, the chart's rules, and refusal of bad values.
# Creates its own virtualenv in k8s/validate/.venv (rebuilt only when requirements.txt
# changes). Needs Python >= 3.10 with pip, and the Python package registry; nothing else.
#   bash k8s/validate/validate.sh [--dump DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
pip_flags=(--quiet --disable-pip-version-check --no-input)

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "validate.sh: needs Python >= 3.10 as '$python' (set PYTHON=...)" >&2
  exit 2
fi

want="$(cd "$here" && "$python" -c 'import hashlib,sys; print(hashlib.sha256(open("requirements.txt","rb").read()).hexdigest())')"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "validate.sh: preparing $venv" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian ships venv without ensurepip unless python3-venv is installed: make the venv
    # without pip and install pip into it with the system's pip.
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv"
    "$python" -m pip --python "$venv/bin/python" install "${pip_flags[@]}" pip
  fi
  "$venv/bin/python" -m pip install "${pip_flags[@]}" --only-binary helm-python-sdk -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

exec "$venv/bin/python" "$here/validate.py" "$@"
