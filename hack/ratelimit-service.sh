#!/usr/bin/env bash
# Installs what filters/ratelimit's global-mode integration test runs against:
#   - redis-server (Debian package), with apt-get when it is missing;
#   - envoyproxy/ratelimit's service binary, built with `go install` from the module proxy
#     into a cache directory (not meshplug's go.mod), reused when already built.
# Prints nothing but progress; the binaries' locations are
#   redis-server:           on PATH (/usr/bin/redis-server)
#   ratelimit service:      $MESHPLUG_CACHE/ratelimit/<version>/bin/service_cmd
# The test finds them the same way (filters/ratelimit/globaltest).
set -euo pipefail

# A pseudo-version of envoyproxy/ratelimit's main branch whose go.mod builds with Go 1.26
# (go 1.25.6 directive, no replace directives so `go install pkg@version` accepts it).
RATELIMIT_VERSION="${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}"
CACHE="${MESHPLUG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshplug}"
bindir="$CACHE/ratelimit/$RATELIMIT_VERSION/bin"

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  # The package's postinst starts a redis on :6379 where systemd runs; the test starts its own.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server
fi
redis-server --version

if [ -x "$bindir/service_cmd" ]; then
  echo "ratelimit service $RATELIMIT_VERSION: cached at $bindir/service_cmd"
else
  echo "building ratelimit service $RATELIMIT_VERSION into $bindir"
  mkdir -p "$bindir"
  # GOFLAGS cleared so a caller's -mod=... does not reach a module-less go install.
  GOFLAGS= GOBIN="$bindir" go install "github.com/envoyproxy/ratelimit/src/service_cmd@$RATELIMIT_VERSION"
fi
echo "RATELIMIT_SERVICE=$bindir/service_cmd"
