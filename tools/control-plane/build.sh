#!/usr/bin/env bash
# Builds kube-apiserver and etcd into OUT_DIR (default build/control-plane) from the modules pinned in
# go.mod and go.sum beside this script, fetched through the Go module proxy (GOPROXY) into Go's module
# cache. The tests start them as a throwaway control plane (tests/support/control_plane.py); `make
# control-plane` runs this. kube-apiserver is stamped with the Kubernetes version of go.mod, as a release
# build is, so that discovery and `kubectl version` report it.
# Usage: build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-build/control-plane}" && cd "${1:-build/control-plane}" && pwd)
command -v go >/dev/null || { echo "control-plane build failed: go is not installed (https://go.dev/dl)" >&2; exit 1; }

cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
# CGO off: static binaries, as Kubernetes releases them, and no C toolchain needed.
# go.sum is the pin: a module missing from it stops the build instead of being resolved anew. The binaries
# carry no VCS stamp, which would name this checkout's state, not the version built.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false"
go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$out/etcd.partial" go.etcd.io/etcd/server/v3
mv "$out/kube-apiserver.partial" "$out/kube-apiserver"
mv "$out/etcd.partial" "$out/etcd"
"$out/kube-apiserver" --version
"$out/etcd" --version | head -n 1
