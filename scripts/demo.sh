#!/usr/bin/env bash
# Runs Switchyard end to end on its demo defaults: local Redis (REDIS_URL when it answers),
# the mock provider, the API and a worker; submits jobs and prints a summary.
# Flags go to the demo: --once (exit when done), --jobs N.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
require_node
ensure_pnpm
install_deps
[ -n "${REDIS_URL:-}" ] || ensure_redis_server
build_all
step "starting the demo"
exec node apps/cli/dist/main.js demo "$@"
