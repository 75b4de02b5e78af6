#!/usr/bin/env bash
# kube-binaries.sh: build kube-apiserver and etcd for envtest from the Go module proxy,
# into a cache directory, and print that directory (for KUBEBUILDER_ASSETS).
#
#   export KUBEBUILDER_ASSETS="$(hack/kube-binaries.sh)"
#
# The cache directory is $MESHPLUG_KUBE_ASSETS, else ~/.cache/meshplug/kube-v1.36.3.
# When both binaries are already there (and report the expected versions) nothing is
# built. Otherwise a small wrapper module is written to <cache>/src — never to the
# repository's go.mod — that requires k8s.io/kubernetes and replaces each module
# kubernetes' go.mod points at ./staging/... with the matching published v0.x.y (the
# proxy refuses k8s.io/sample-cli-plugin, which nothing needs, so it is left out).
# etcd comes from the same dependency graph (go.etcd.io/etcd/server/v3) through a
# three-line main calling etcdmain.Main. Needs only Go and the module proxy; takes about
# 4 minutes from an empty build cache on 2 cores.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
dir=${MESHPLUG_KUBE_ASSETS:-$HOME/.cache/meshplug/kube-$K8S_VERSION}
log() { echo "kube-binaries: $*" >&2; }

if [[ -x $dir/kube-apiserver && -x $dir/etcd ]] &&
  "$dir/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION" &&
  "$dir/etcd" --version 2>/dev/null | grep -q '^etcd Version: 3\.6\.'; then
  log "cached in $dir"
  echo "$dir"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0
src=$dir/src
mkdir -p "$src/etcd" "$dir"
cd "$src"

# The replace list comes from kubernetes' own go.mod, so it follows the version.
kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[[ -f $kmod ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
{
  echo "module meshplug.local/kubebinaries"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  awk '/=> \.\/staging\/src\// && $1 != "k8s.io/sample-cli-plugin" {print "\t" $1 " => " $1 " '"$STAGING_VERSION"'"}' "$kmod"
  echo ")"
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
GO
cat >etcd/main.go <<'GO'
// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
log "resolving modules in $src"
go mod tidy >&2 # tidy sees every build tag but "ignore", so tools.go counts

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION#v}" | cut -d. -f2)"
log "building etcd"
go build -trimpath -ldflags "-s -w" -o "$dir/etcd.tmp" ./etcd
log "building kube-apiserver $K8S_VERSION (about 4 minutes from an empty build cache)"
go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$dir/etcd.tmp" "$dir/etcd"
mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
log "$("$dir/kube-apiserver" --version); $("$dir/etcd" --version | head -1)"
echo "$dir"
