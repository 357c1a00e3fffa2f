#!/usr/bin/env bash
# Runs tickflow's whole test suite on a fresh Debian machine: installs the
# real servers the tests spawn (Redis, ClickHouse, Chromium, kcat) when they
# are missing, then `go test -race ./...`. Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server      >/dev/null || need+=(redis-server)
command -v redis-cli         >/dev/null || need+=(redis-tools)
command -v redis-benchmark   >/dev/null || need+=(redis-tools)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v chromium          >/dev/null || need+=(chromium)
command -v kcat              >/dev/null || need+=(kcat)
if ((${#need[@]})); then
  echo "scripts/test.sh: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi

go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
exec go test -race -timeout 20m "$@" ./...
