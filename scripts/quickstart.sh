#!/usr/bin/env bash
# Quick start: installs what is missing, then runs the gateway on embedded defaults (SQLite
# store in ./data, a local nginx, examples/routes.yaml and a demo backend).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec bin/appgw serve --demo "$@"
