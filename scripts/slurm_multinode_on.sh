#!/bin/bash
# Run a command on a node of the two-node test cluster (scripts/slurm_multinode_up.sh).
#
#   bash scripts/slurm_multinode_on.sh sinfo                 # on the head (the login node)
#   bash scripts/slurm_multinode_on.sh -n node2 ps -ef       # on compute node node2
#
# The command runs in that node's mount, UTS, network and PID namespaces, in the current
# directory (the filesystem outside the bound Slurm/munge paths is the host's, so /tmp and
# the checkout are shared by all nodes). SLURM_CONF is dropped: the node's /etc/slurm is the
# cluster's own configuration, whatever the caller's environment points at.
set -uo pipefail
DIR="${GANDIST_MN_DIR:-/tmp/gandist-mn}"
node=head
if [ "${1:-}" = -n ]; then node=$2; shift 2; fi
pid="$(cat "$DIR/pids/$node.pid" 2>/dev/null)"
if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != gandist-nsinit ]; then
  echo "slurm_multinode_on: node $node is not running (start the cluster: sudo bash scripts/slurm_multinode_up.sh)" >&2
  exit 1
fi
[ $# -gt 0 ] || set -- bash
exec nsenter -t "$pid" -m -u -n -p --wd="$PWD" -- env -u SLURM_CONF "$@"
