#!/usr/bin/env bash
# The end-to-end job's driver (.github/workflows/e2e.yml runs its steps in this order): the platform of
# tests/e2e/k3d-stack.yaml on a k3d cluster, the book's system run on it as an Argo workflow, and TF Serving
# checked to serve the model that workflow promoted. Needs Docker; run from anywhere in the checkout.
#
#   run.sh tools DIR   install the pinned k3d, kubectl and helm into DIR (checksums verified)
#   run.sh render      run the program for the stack (mocked engine) and write its objects to $E2E_DIR
#   run.sh images      build mlstack-training (cpu) and mlstack-workloads, tagged as the stack says
#   run.sh cluster     create the stack's k3d registry and the k3d cluster that uses it
#   run.sh push        push the images to that registry
#   run.sh platform    MinIO and its Secrets, then the rendered objects, charts, operator and custom objects
#   run.sh workflow    submit a one-trial grid on small synthetic data and wait for the workflow to succeed
#   run.sh serving     check that TF Serving reports a version AVAILABLE and answers predictions
#   run.sh diagnose    print the cluster's state, events and logs (after a failure)
#   run.sh delete      delete the cluster and the registry
#
# Credentials are generated here and never printed; on GitHub Actions they are masked as well.
set -euo pipefail

# Tool pins: these three, nowhere else. kubectl stays within one minor of the stack's Kubernetes.
K3D_VERSION=v5.9.0
K3D_SHA256=06d8f25bc3a971c4eb29e0ff08429b180402db0f4dec838c9eac427e296800a0
KUBECTL_VERSION=v1.33.5
KUBECTL_SHA256=6a12d6c39e4a611a3687ee24d8c733961bb4bae1ae975f5204400c0a6930c6fc
HELM_VERSION=v3.19.0
HELM_SHA256=a7f81ce08007091b86d8bd696eb4d86b8d0f2e1b9f6c714be62f82f96a594496

cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
HERE=tests/e2e
E2E_DIR=${E2E_DIR:-build/e2e}
CLUSTER=${E2E_CLUSTER:-mlstack-e2e}
PYTHON=${PYTHON:-.venv/bin/python}
FIELD_MANAGER=mlstack-e2e
# The grid and its data: one trial, small synthetic splits, so that CPU-only pods finish in minutes.
GRID=(--models plain --learning-rates 0.01 --batch-sizes 64 --epochs 1 --workers-per-trial 2 --parallelism 1)
SYNTHETIC=(synthetic-train=2048 synthetic-test=512 shard-size=512 smoke-records=200)
WORKFLOW_TIMEOUT_S=${WORKFLOW_TIMEOUT_S:-1200}
LOCAL_REST_PORT=${LOCAL_REST_PORT:-18501}

log() { printf '\n== %s\n' "$*"; }
fail() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

# The stack's facts (TRAINING_IMAGE, S3_SECRET, ...): the assignments render writes to stack.env.
stack() {
  [[ -f $E2E_DIR/stack.env ]] || fail "no $E2E_DIR/stack.env: run '$0 render' first"
  # shellcheck source=/dev/null
  source "$E2E_DIR/stack.env"
}

# A secret value: masked in GitHub's logs from here on (the runner hides the workflow command itself).
mask() {
  if [[ -n ${GITHUB_ACTIONS:-} ]]; then
    echo "::add-mask::$1"
  fi
}

download() { # URL SHA256 FILE
  curl --fail --silent --show-error --location --retry 3 --proto '=https' --output "$3" "$1"
  printf '%s  %s\n' "$2" "$3" | sha256sum --check --quiet -
}

cmd_tools() {
  local bin=${1:?usage: run.sh tools DIR} scratch
  scratch=$(mktemp -d)
  mkdir -p "$bin"
  download "https://github.com/k3d-io/k3d/releases/download/$K3D_VERSION/k3d-linux-amd64" "$K3D_SHA256" "$scratch/k3d"
  download "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl" "$KUBECTL_SHA256" "$scratch/kubectl"
  download "https://get.helm.sh/helm-$HELM_VERSION-linux-amd64.tar.gz" "$HELM_SHA256" "$scratch/helm.tar.gz"
  tar -xzf "$scratch/helm.tar.gz" -C "$scratch" linux-amd64/helm
  install -m 0755 "$scratch/k3d" "$scratch/kubectl" "$scratch/linux-amd64/helm" "$bin/"
  rm -rf "$scratch"
  "$bin/k3d" version && "$bin/kubectl" version --client && "$bin/helm" version --short
}

cmd_render() {
  "$PYTHON" -m tests.e2e.render "$E2E_DIR"
}

cmd_images() {
  stack
  docker build -f workloads/images/training.Dockerfile --build-arg VARIANT=cpu -t "$TRAINING_IMAGE" .
  docker build -f workloads/images/workloads.Dockerfile -t "$WORKLOADS_IMAGE" .
}

# The stack's registry is k3d-managed: k3d-<name>:<port>/<path>, the same name inside the cluster and here.
registry_host() { echo "${IMAGE_REGISTRY%%/*}"; }

cmd_cluster() {
  stack
  local host name port
  host=$(registry_host)
  name=${host%:*}
  port=${host##*:}
  [[ $name == k3d-* && $port =~ ^[0-9]+$ ]] || fail "imageRegistry $IMAGE_REGISTRY is not a k3d registry (k3d-NAME:PORT/...)"
  # Docker pushes to the registry by that name: make it resolve here (k3d's own containers know it).
  if ! getent hosts "$name" >/dev/null; then
    echo "127.0.0.1 $name" | sudo tee -a /etc/hosts >/dev/null
  fi
  log "registry $host"
  k3d registry create "${name#k3d-}" --port "$port"
  log "cluster $CLUSTER ($K3S_IMAGE, nodes in $NODE_CIDR)"
  k3d cluster create "$CLUSTER" \
    --image "$K3S_IMAGE" \
    --servers 1 --agents 0 \
    --subnet "$NODE_CIDR" \
    --registry-use "$host" \
    --wait --timeout 300s
  kubectl wait --for=condition=Ready node --all --timeout=180s
  kubectl get nodes -o wide
}

cmd_push() {
  stack
  docker push "$TRAINING_IMAGE"
  docker push "$WORKLOADS_IMAGE"
}

apply() { kubectl apply --server-side --field-manager="$FIELD_MANAGER" "$@"; }

# Waits for every Deployment in the manifest FILE to roll out.
wait_for_deployments() {
  local file=$1 namespace name
  kubectl get -f "$file" -o json |
    jq --raw-output '(.items // [.])[] | select(.kind == "Deployment") | "\(.metadata.namespace) \(.metadata.name)"' |
    while read -r namespace name; do
      kubectl rollout status -n "$namespace" "deployment/$name" --timeout=300s
    done
}

# The S3 credentials: random, in a Secret in MinIO's namespace and in every namespace whose pods use them.
create_s3_secrets() {
  local access_key secret_key private env_file namespace users
  access_key=$(openssl rand -hex 16)
  secret_key=$(openssl rand -hex 32)
  mask "$access_key"
  mask "$secret_key"
  private=$(mktemp -d)
  env_file=$private/s3.env
  printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$access_key" "$secret_key" >"$env_file"
  read -r -a users <<<"$S3_SECRET_NAMESPACES"
  for namespace in "$S3_NAMESPACE" "${users[@]}"; do
    kubectl create secret generic "$S3_SECRET" -n "$namespace" --from-env-file="$env_file"
  done
  rm -rf "$private"
}

cmd_platform() {
  stack
  log "namespaces"
  apply -f "$E2E_DIR/00-namespaces.yaml"
  kubectl create namespace "$S3_NAMESPACE"

  log "MinIO ($S3_ENDPOINT) and the $S3_SECRET Secrets (in $S3_NAMESPACE $S3_SECRET_NAMESPACES)"
  create_s3_secrets
  apply -f "$HERE/minio.yaml"
  wait_for_deployments "$HERE/minio.yaml"
  kubectl wait --for=condition=Complete job --all -n "$S3_NAMESPACE" --timeout=180s

  log "objects of built-in kinds"
  apply -f "$E2E_DIR/10-objects.yaml"

  local name namespace chart repository version timeout values kustomization manifest index=0
  while IFS=$'\t' read -r name namespace chart repository version timeout values; do
    log "chart $chart $version as $namespace/$name"
    helm upgrade --install "$name" "$chart" --repo "$repository" --version "$version" \
      --namespace "$namespace" --values "$E2E_DIR/$values" --atomic --wait --timeout "${timeout}s"
  done <"$E2E_DIR/releases.tsv"

  while read -r kustomization; do
    log "kustomization $kustomization"
    manifest=$E2E_DIR/kustomization-$((index += 1)).yaml
    kubectl kustomize "$kustomization" >"$manifest"
    apply -f "$manifest"
    kubectl wait --for=condition=Established crd --all --timeout=120s
    wait_for_deployments "$manifest"
  done <"$E2E_DIR/kustomizations.txt"

  log "objects of custom kinds"
  apply -f "$E2E_DIR/20-custom.yaml"
  helm list --all-namespaces
}

# The Workflow as `python -m workloads workflow` renders it, with small synthetic splits (the command has
# no flags for them: they are the template's parameters, which a Workflow's arguments override).
render_workflow() {
  local file=$1
  "$PYTHON" -m workloads workflow "${GRID[@]}" \
    --dataset "s3://$S3_BUCKET/e2e/dataset" --runs "s3://$S3_BUCKET/e2e/runs" --model-store "$MODEL_STORE" \
    --output "$file"
  "$PYTHON" - "$file" "${SYNTHETIC[@]}" <<'EOF'
import pathlib, sys, yaml
path = pathlib.Path(sys.argv[1])
workflow = yaml.safe_load(path.read_text())
parameters = workflow["spec"]["arguments"]["parameters"]
for item in sys.argv[2:]:
    name, value = item.split("=", 1)
    parameters.append({"name": name, "value": value})
path.write_text(yaml.safe_dump(workflow, sort_keys=False))
EOF
}

workflow_field() { kubectl get workflow "$1" -n "$TRAINING_NAMESPACE" -o jsonpath="{$2}"; }

wait_for_workflow() {
  local name=$1 deadline=$((SECONDS + WORKFLOW_TIMEOUT_S)) phase progress seen=""
  while ((SECONDS < deadline)); do
    # A failed read (the API server busy for a moment) is retried on the next round.
    phase=$(workflow_field "$name" .status.phase || true)
    progress=$(workflow_field "$name" .status.progress || true)
    if [[ "$phase $progress" != "$seen" ]]; then
      seen="$phase $progress"
      echo "$(date -u +%H:%M:%S) workflow $name: ${phase:-Pending} ${progress}"
    fi
    case $phase in
      Succeeded) return 0 ;;
      Failed | Error) fail "workflow $name: $phase: $(workflow_field "$name" .status.message)" ;;
    esac
    sleep 10
  done
  fail "workflow $name: not finished after ${WORKFLOW_TIMEOUT_S}s"
}

cmd_workflow() {
  stack
  local file=$E2E_DIR/workflow.yaml name
  render_workflow "$file"
  name=$(kubectl create -f "$file" -o jsonpath='{.metadata.name}')
  log "workflow $name submitted"
  wait_for_workflow "$name"
  kubectl get workflow "$name" -n "$TRAINING_NAMESPACE" -o wide
}

cmd_serving() {
  stack
  local url=http://127.0.0.1:$LOCAL_REST_PORT status predictions
  kubectl rollout status -n "$SERVING_NAMESPACE" "deployment/$TF_SERVING" --timeout=300s
  kubectl port-forward -n "$SERVING_NAMESPACE" "service/$TF_SERVING" "$LOCAL_REST_PORT:$TFS_REST_PORT" \
    >"$E2E_DIR/port-forward.log" 2>&1 &
  FORWARD_PID=$!
  trap 'kill "$FORWARD_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 30); do
    status=$(curl --fail --silent --show-error "$url/v1/models/$MODEL_NAME" 2>/dev/null) && break
    sleep 2
  done
  [[ -n ${status:-} ]] || fail "TF Serving did not answer on $url (port-forward: $(cat "$E2E_DIR/port-forward.log"))"
  echo "$status"
  jq --exit-status '[.model_version_status[] | select(.state == "AVAILABLE")] | length > 0' <<<"$status" >/dev/null ||
    fail "no version of $MODEL_NAME is AVAILABLE"

  predictions=$("$PYTHON" -m workloads predict --server-url "$url" --model-name "$MODEL_NAME" --synthetic 8)
  echo "$predictions"
  jq --slurp --exit-status 'length == 8 and all(.[]; (.class_id | type) == "number" and .score > 0)' \
    <<<"$predictions" >/dev/null || fail "predict did not classify the 8 synthetic images"
}

cmd_diagnose() {
  set +e
  log "nodes, objects and releases"
  kubectl get nodes -o wide
  kubectl get all --all-namespaces -o wide
  kubectl get workflows,workflowtemplates,tfjobs,pytorchjobs,scaledobjects --all-namespaces -o wide
  helm list --all-namespaces
  log "events"
  kubectl get events --all-namespaces --sort-by=.lastTimestamp
  log "workflows"
  kubectl get workflows -n "${TRAINING_NAMESPACE:-mlstack-training}" -o yaml
  local namespace pod
  kubectl get pods --all-namespaces --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name |
    while read -r namespace pod; do
      log "pod $namespace/$pod"
      kubectl describe pod -n "$namespace" "$pod" | sed -n '/^Containers:/,/^Conditions:/p;/^Events:/,$p'
      kubectl logs -n "$namespace" "$pod" --all-containers --prefix --tail=300
      kubectl logs -n "$namespace" "$pod" --all-containers --prefix --tail=100 --previous 2>/dev/null
    done
  df -h /
  return 0
}

cmd_delete() {
  stack
  local host
  host=$(registry_host)
  k3d cluster delete "$CLUSTER"
  k3d registry delete "${host%:*}"
}

main() {
  local command=${1:-}
  shift || true
  case $command in
    tools | render | images | cluster | push | platform | workflow | serving | delete) "cmd_$command" "$@" ;;
    diagnose)
      [[ -f $E2E_DIR/stack.env ]] && stack
      cmd_diagnose
      ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2 && exit 2 ;;
  esac
}

main "$@"
