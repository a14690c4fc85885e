#!/usr/bin/env bash
# Runs the benchmark scenarios (see apps/bench): starts its own redis-server, mock provider,
# API and workers; writes bench/results/<time>-<name>.json and .md.
# Flags: --quick, --scenario <name>, --duration <seconds>.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
require_node
ensure_pnpm
install_deps
ensure_redis_server
ensure_valgrind
build_all
step "running the benchmark"
exec node apps/bench/dist/main.js "$@"
