#!/usr/bin/env bash
# Makes sure an etcd server binary is available for the integration tests.
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
  etcd --version | head -n 1
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y etcd-server
  etcd --version | head -n 1
  exit 0
fi

echo "etcd not found on PATH. Install Debian's etcd-server package as root: apt-get install -y etcd-server" >&2
exit 1
