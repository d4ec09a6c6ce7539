#!/usr/bin/env bash
# Everything a fresh checkout needs before it runs: npm packages, the etcd server (Debian's
# etcd-server), Graphviz (Debian's graphviz: `npm run viz` renders the diagrams with `dot`, and the
# diagram tests render node.dot), and Chromium (Debian's chromium) for the one browser test. Idempotent and quick
# when nothing is missing. Installing Debian packages needs root, as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
ensure_debian_package() {
  local binary=$1 package=$2
  if command -v "$binary" >/dev/null 2>&1; then return 0; fi
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "setup: '$binary' not found. Install Debian's $package package as root: apt-get install -y $package" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ $apt_updated -eq 0 ]]; then
    echo "setup: apt-get update" >&2
    apt-get update -qq >&2
    apt_updated=1
  fi
  echo "setup: installing $package" >&2
  apt-get install -y -qq --no-install-recommends "$package" >&2
}

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi

ensure_debian_package etcd etcd-server
ensure_debian_package dot graphviz
echo "setup: $(etcd --version | head -n 1)" >&2
if [[ "${1:-}" == "--with-browser" ]]; then
  ensure_debian_package chromium chromium
fi
