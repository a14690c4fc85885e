# Shared by scripts/demo.sh and scripts/test.sh: gets pnpm and the dependencies in place.
# Everything it installs goes into the project (.tools/, node_modules/); only redis-server
# may come from apt-get, and only when we are root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PNPM_VERSION="10.34.8"
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0
# Corepack's bundled signing keys lag behind the registry on some Node releases; the
# version is pinned in package.json and its integrity in pnpm-lock.yaml.
export COREPACK_INTEGRITY_KEYS=0
export PATH="$ROOT/.tools/bin:$ROOT/node_modules/.bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

require_node() {
  command -v node >/dev/null || die "Node.js >= 20.18 is required: https://nodejs.org (or apt-get install nodejs)"
  local major minor
  major=$(node -p 'process.versions.node.split(".")[0]')
  minor=$(node -p 'process.versions.node.split(".")[1]')
  if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 18 ]; }; then
    die "Node.js >= 20.18 is required; this is $(node --version)"
  fi
}

ensure_pnpm() {
  if command -v pnpm >/dev/null && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then return; fi
  mkdir -p "$ROOT/.tools/bin"
  if command -v corepack >/dev/null && corepack enable --install-directory "$ROOT/.tools/bin" pnpm 2>/dev/null \
    && (cd "$ROOT" && pnpm --version >/dev/null 2>&1); then
    return
  fi
  step "installing pnpm $PNPM_VERSION into .tools/ (corepack unavailable)"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools/pnpm" "pnpm@$PNPM_VERSION" >/dev/null
  ln -sf "$ROOT/.tools/pnpm/node_modules/.bin/pnpm" "$ROOT/.tools/bin/pnpm"
  pnpm --version >/dev/null || die "could not install pnpm; try: npm install -g pnpm@$PNPM_VERSION"
}

install_deps() {
  step "installing dependencies (pnpm install --frozen-lockfile)"
  (cd "$ROOT" && pnpm install --frozen-lockfile --reporter=append-only 2>&1 | grep -v -E '^(Progress|\s*$)' | tail -n 5)
}

build_all() {
  step "building apps (turbo run build)"
  (cd "$ROOT" && pnpm exec turbo run build --output-logs=errors-only)
}

# Tests and the demo start their own redis-server when REDIS_URL is not given; they need the binary.
ensure_redis_server() {
  if command -v redis-server >/dev/null; then return; fi
  if can_apt; then
    step "installing redis-server with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
      || die "apt-get could not install redis-server"
    return
  fi
  die "redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL to a running Redis."
}

# Installs Debian packages quietly without recommends (an update first only when the plain install
# fails); true when they are installed. Only as root with apt-get: callers check can_apt first.
can_apt() { [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; }
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

# The live alert and dashboard test (test/e2e/prometheus.e2e.test.ts) runs a real Prometheus and
# promtool (Debian's prometheus package). Installed with apt-get when missing and we are root;
# otherwise that test says loudly that it cannot run (and fails under CI=true).
ensure_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return; fi
  if can_apt; then
    step "installing prometheus (and promtool) with apt-get"
    # The package may start a daemon of its own on :9090; the test runs its own on a free port.
    apt_install prometheus || die "apt-get could not install prometheus"
    return
  fi
  printf '\033[33mwarning:\033[0m prometheus/promtool are not installed and cannot be installed here (not root);\n' >&2
  printf '         the live Prometheus test will be skipped. Install them: sudo apt-get install prometheus\n' >&2
}

# valgrind (callgrind) for the bench's redis-cost scenario, which counts Redis's instructions
# per job; without it that scenario says so and the others run.
ensure_valgrind() {
  if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then return; fi
  if can_apt; then
    step "installing valgrind with apt-get (the redis-cost scenario counts instructions with it)"
    apt_install valgrind \
      || printf '\033[33mwarning:\033[0m apt-get could not install valgrind; the redis-cost scenario will be skipped\n' >&2
    return
  fi
  printf '\033[33mwarning:\033[0m valgrind is not installed and cannot be installed here (not root);\n' >&2
  printf '         the redis-cost scenario will be skipped. Install it: sudo apt-get install valgrind\n' >&2
}
