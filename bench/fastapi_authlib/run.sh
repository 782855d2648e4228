#!/usr/bin/env bash
# Starts the FastAPI/Starlette + Authlib baseline (app.py) for bench/load_resource_server.sh:
# one uvicorn worker pinned to core 0, like the Rust example under test. It exists only as a
# benchmark comparison peer.
#
#   OIDC_ISSUER=http://127.0.0.1:PORT OIDC_AUDIENCE=demo-api PORT=8001 bench/fastapi_authlib/run.sh
#
# First run: creates bench/fastapi_authlib/.venv (python3 -m venv) and installs the pinned
# requirements.txt from PyPI; it reinstalls when requirements.txt changes. The server runs with
# uvloop and httptools (what `uvicorn[standard]`, the usual production setup, brings), named
# explicitly so a missing one fails instead of silently falling back to asyncio/h11.
# The script execs uvicorn, so its PID is the server's: the caller stops it with kill PID.
# Discovery and JWKS are fetched once at startup; it exits non-zero if the issuer is unreachable.
set -euo pipefail
cd "$(dirname "$0")"

: "${OIDC_ISSUER:?set OIDC_ISSUER (the issuer URL)}"
: "${OIDC_AUDIENCE:?set OIDC_AUDIENCE (the expected aud)}"
PORT=${PORT:-8001}
export OIDC_ISSUER OIDC_AUDIENCE

if [[ ! -x .venv/bin/uvicorn ]] || ! cmp -s requirements.txt .venv/requirements.installed; then
  echo "installing bench/fastapi_authlib/.venv from requirements.txt" >&2
  [[ -d .venv ]] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt >&2
  cp requirements.txt .venv/requirements.installed
fi

exec taskset -c 0 .venv/bin/uvicorn app:app --host 127.0.0.1 --port "$PORT" --workers 1 \
  --loop uvloop --http httptools --log-level warning
