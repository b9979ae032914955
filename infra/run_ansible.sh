#!/usr/bin/env bash
# Runs the project's playbooks for the mlstack Pulumi program (infra/components/host_configuration.py).
#
# Inputs arrive in the environment, never on a command line:
#   MLSTACK_ANSIBLE_DIR        the Ansible project (ansible.cfg, playbooks/site.yml)
#   MLSTACK_INVENTORY          the generated YAML inventory
#   MLSTACK_SECRET_VARS        YAML vars file with the secrets (k3s_token), written 0600 and removed on exit
#   MLSTACK_SSH_PRIVATE_KEY    optional private key (otherwise ssh-agent or ~/.ssh is used)
#   MLSTACK_SSH_KNOWN_HOSTS    optional known_hosts text (mlstack:sshKnownHosts): SSH then trusts these host
#                              keys only (StrictHostKeyChecking=yes); unset, a host's key is accepted on first
#                              contact and refused if it changes later (accept-new, your ~/.ssh/known_hosts)
#   MLSTACK_WAIT_FOR_CLOUD_INIT  "true" to wait for new machines to finish cloud-init first
# Ansible's output goes to stderr; stdout carries only the fetched kubeconfig.
set -euo pipefail

: "${MLSTACK_ANSIBLE_DIR:?}" "${MLSTACK_INVENTORY:?}" "${MLSTACK_SECRET_VARS:?}"
for tool in ansible ansible-playbook; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "mlstack: $tool is not on PATH; run pulumi from the project's virtual environment" \
      "(source .venv/bin/activate) or install it with pip install -e '.[ansible]'" >&2
    exit 127
  fi
done
if [ ! -f "$MLSTACK_ANSIBLE_DIR/playbooks/site.yml" ]; then
  echo "mlstack: $MLSTACK_ANSIBLE_DIR/playbooks/site.yml not found (mlstack:ansibleDir)" >&2
  exit 2
fi

umask 077
workdir=$(mktemp -d "${TMPDIR:-/tmp}/mlstack-ansible.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
printf '%s\n' "$MLSTACK_INVENTORY" >"$workdir/inventory.yml"
printf '%s\n' "$MLSTACK_SECRET_VARS" >"$workdir/secrets.yml"

if [ -n "${MLSTACK_SSH_KNOWN_HOSTS:-}" ]; then
  # ssh splits the option's value at whitespace (several files), so the path must have none.
  if [[ "$workdir" =~ [[:space:]] ]]; then
    echo "mlstack: TMPDIR ($workdir) contains whitespace; ssh cannot use a known_hosts file there" >&2
    exit 2
  fi
  printf '%s\n' "$MLSTACK_SSH_KNOWN_HOSTS" >"$workdir/known_hosts"
  ssh_options="-o StrictHostKeyChecking=yes -o UserKnownHostsFile=$workdir/known_hosts"
  ssh_options+=" -o GlobalKnownHostsFile=/dev/null"
  # Ansible would put StrictHostKeyChecking=no ahead of ours (ssh keeps the first value) if host key
  # checking were turned off in the caller's environment.
  export ANSIBLE_HOST_KEY_CHECKING=True
else
  ssh_options="-o StrictHostKeyChecking=accept-new"
fi
connection=(-i "$workdir/inventory.yml" --ssh-common-args "$ssh_options")
if [ -n "${MLSTACK_SSH_PRIVATE_KEY:-}" ]; then
  printf '%s\n' "$MLSTACK_SSH_PRIVATE_KEY" >"$workdir/ssh_key"
  connection+=(--private-key "$workdir/ssh_key")
fi

cd "$MLSTACK_ANSIBLE_DIR"
if [ "${MLSTACK_WAIT_FOR_CLOUD_INIT:-false}" = "true" ]; then
  ansible all "${connection[@]}" -m ansible.builtin.wait_for_connection -a "timeout=900" >&2
  ansible all "${connection[@]}" -m ansible.builtin.command -a "cloud-init status --wait" >&2
fi
ansible-playbook "${connection[@]}" -e "@$workdir/secrets.yml" \
  -e "k3s_kubeconfig_dest=$workdir/kubeconfig" playbooks/site.yml >&2

if [ ! -s "$workdir/kubeconfig" ]; then
  echo "mlstack: the playbooks did not write a kubeconfig to k3s_kubeconfig_dest" >&2
  exit 1
fi
cat "$workdir/kubeconfig"
