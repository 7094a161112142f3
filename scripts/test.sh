#!/usr/bin/env bash
# Runs every test: type check, then jest (unit, golden, provider and real-nginx edge tests).
set -euo pipefail
cd "$(dirname "$0")/.."
APPGW_TEST_DEPS=1 bash scripts/ensure-deps.sh
npx tsc -p tsconfig.json --noEmit
npx jest "$@"
