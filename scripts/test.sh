#!/usr/bin/env bash
# Runs every check CI runs: install, build, typecheck, lint, format, and all jest tests
# (unit, integration on a real redis-server, end-to-end with the apps as processes).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
require_node
ensure_pnpm
install_deps
ensure_redis_server
ensure_prometheus
build_all
step "typecheck (tsc --noEmit, every package)"
pnpm exec turbo run typecheck --output-logs=errors-only
step "lint (eslint) and format (prettier --check)"
pnpm exec eslint . --max-warnings 0
pnpm exec prettier --check . --log-level warn
step "tests (jest: unit, integration, end to end)"
pnpm exec jest --ci "$@"
