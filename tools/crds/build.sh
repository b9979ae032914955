#!/usr/bin/env bash
# Generates the CRDs of the custom kinds the Pulumi program declares into OUT_DIR (default build/crds), one
# file per API group and version: controller-gen (pinned in go.mod) reads each project's published Go
# API types at the version go.mod pins. The API server tests install them before the program's objects.
# Descriptions are left out (maxDescLen=0): the server validates against the schema, not the prose. Pod
# templates' metadata keeps its schema (generateEmbeddedObjectMeta, as the training operator generates its
# own CRDs), so labels and annotations in them are validated, not pruned.
# Usage: build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-build/crds}" && cd "${1:-build/crds}" && pwd)
command -v go >/dev/null || { echo "crd build failed: go is not installed (https://go.dev/dl)" >&2; exit 1; }

cd "$here"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false"
go build -trimpath -o "$out/.controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen
rm -rf "$out/.partial"
mkdir -p "$out/.partial"
# Package import paths, each the API of one group version.
while read -r package; do
  [ -n "$package" ] || continue
  "$out/.controller-gen" crd:maxDescLen=0,allowDangerousTypes=true,generateEmbeddedObjectMeta=true paths="$package" \
    output:crd:dir="$out/.partial" ||
    { echo "crd build failed: controller-gen could not generate the CRDs of $package" >&2; exit 1; }
done <<'PACKAGES'
github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1
github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1
github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1
github.com/kedacore/keda/v2/apis/keda/v1alpha1
github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1
PACKAGES
# Argo's own post-processing of its controller-gen output (hack/manifests cleancrd, the step of its release
# build): a template's container needs no name, `steps` is a list of lists, metadata takes generateName.
go build -trimpath -o "$out/.argo-cleancrd" github.com/argoproj/argo-workflows/v4/hack/manifests
for crd in "$out"/.partial/argoproj.io_*.yaml; do
  errors=$("$out/.argo-cleancrd" cleancrd "$crd" 2>&1)
  [ -z "$errors" ] || { echo "crd build failed: Argo's cleancrd on $crd: $errors" >&2; exit 1; }
done
find "$out" -maxdepth 1 -name '*.yaml' -delete
mv "$out"/.partial/*.yaml "$out"/
rmdir "$out/.partial"
ls "$out"
