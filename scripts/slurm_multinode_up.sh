#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for tests/test_slurm_multinode.py.
#
#   sudo bash scripts/slurm_multinode_up.sh             # start (or check) it: about 5-10 s
#   bash scripts/slurm_multinode_on.sh sinfo            # a command on the head (login) node
#   bash scripts/slurm_multinode_on.sh -n node2 ps -ef  # ... or on a compute node
#   sudo bash scripts/slurm_multinode_down.sh           # stop it, leaving nothing behind
#
# Three "hosts", each a set of Linux namespaces (mount, UTS, network, PID) with its own init
# (scripts/slurm_multinode_init.sh):
#
#   head    10.77.0.254   munged, slurmctld, the bridge br0; where jobs are submitted from
#   node1   10.77.0.1     slurmd     each with its own hostname, address (a veth on br0),
#   node2   10.77.0.2     slurmd     /etc/slurm, /etc/munge, /etc/hosts, /run, spool and logs
#
# The stock daemons run with their default paths, which the namespaces point at private copies
# under $GANDIST_MN_DIR. The host's own Slurm (scripts/slurm_up.sh: its config, munge socket,
# ports 6817/6818) is never touched: 127.0.0.1 inside a namespace is that namespace's own
# loopback, the veths are created inside the namespaces, and no address of this cluster exists
# in the host's network namespace. Everything outside the bound paths -- /tmp, the checkout, the
# Python environment -- is the host's, so the nodes share it as a cluster shares its filesystem.
#
# As root on Debian/Ubuntu; installs slurmctld, slurmd, slurm-client, munge and iproute2 with
# apt-get when they are missing. Knobs: GANDIST_MN_DIR (/tmp/gandist-mn), GANDIST_MN_NODES (2),
# GANDIST_MN_CPUS (CPUs per node, 2), GANDIST_MN_MEM_MB (memory per node, 4096), GANDIST_MN_NET
# (10.77.0, a /24 used only inside the namespaces), GANDIST_MN_TIMEOUT (60 s for the nodes to
# become idle), GANDIST_MN_REQUEUE_DELAY (10 s before a requeued job may start again),
# GANDIST_MN_NODE_TIMEOUT (15 s without an answer before the controller declares a node down).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${GANDIST_MN_DIR:-/tmp/gandist-mn}"
NNODES="${GANDIST_MN_NODES:-2}"
CPUS="${GANDIST_MN_CPUS:-2}"
MEM_MB="${GANDIST_MN_MEM_MB:-4096}"
NET="${GANDIST_MN_NET:-10.77.0}"
TIMEOUT="${GANDIST_MN_TIMEOUT:-60}"
NODES=(); for ((i = 1; i <= NNODES; i++)); do NODES+=("node$i"); done
ON=(bash "$HERE/slurm_multinode_on.sh")
export GANDIST_MN_DIR="$DIR"
START=$SECONDS
say() { echo "slurm_multinode_up: [$((SECONDS - START)) s] $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it makes namespaces, mounts and network links)"

# 1. Packages ---------------------------------------------------------------------------------
missing=()
for tool in unshare nsenter ip runuser slurmctld slurmd sinfo sbatch srun munged; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and there is no apt-get to install them"
  say "installing slurmctld slurmd slurm-client munge iproute2 (missing: ${missing[*]})"
  mkdir -p "$DIR"
  export DEBIAN_FRONTEND=noninteractive
  packages=(slurmctld slurmd slurm-client munge iproute2 util-linux)
  { apt-get install -y -q --no-install-recommends "${packages[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; }; } >"$DIR/apt.log" 2>&1 \
    || { tail -20 "$DIR/apt.log" >&2; die "apt-get install failed (log: $DIR/apt.log)"; }
fi

# 2. Already up? ------------------------------------------------------------------------------
init_pid() {  # init_pid NAME -> the host pid of NAME's init, when it runs
  local pid
  pid="$(cat "$DIR/pids/$1.pid" 2>/dev/null)" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gandist-nsinit ] || return 1
  echo "$pid"
}
if init_pid head >/dev/null; then
  say "already up; node states:"
  "${ON[@]}" sinfo -N -h -o '%N %T' >&2 || true
  exit 0
fi
# From here on, a failure takes down whatever this run started (the logs stay, for the reason).
trap 'rc=$?; if [ $rc -ne 0 ]; then say "failed (exit $rc): tearing down"; GANDIST_MN_KEEP_LOGS=1 bash "$HERE/slurm_multinode_down.sh" >&2 || true; fi' EXIT
rm -rf "$DIR/ns" "$DIR/pids" "$DIR/etc" "$DIR/munge-run"
mkdir -p "$DIR/bin" "$DIR/pids" "$DIR/etc/slurm"
install -m 0755 "$HERE/slurm_multinode_init.sh" "$DIR/bin/gandist-nsinit"

# 3. The cluster's files ----------------------------------------------------------------------
install -d -o munge -g munge -m 0700 "$DIR/etc/munge"
install -d -o munge -g munge -m 0755 "$DIR/munge-run"
if command -v mungekey >/dev/null; then
  mungekey --create --keyfile="$DIR/etc/munge/munge.key" --force >/dev/null 2>&1
else
  dd if=/dev/urandom of="$DIR/etc/munge/munge.key" bs=1024 count=1 status=none
fi
chown munge:munge "$DIR/etc/munge/munge.key" && chmod 0400 "$DIR/etc/munge/munge.key"

# The ::ffff: lines answer reverse lookups of peers seen on dual-stack sockets (torch's TCPStore
# listens on one) from this file; without them glibc asks the host's DNS, which no namespace
# reaches, and every rank warns "The hostname of the client socket cannot be retrieved".
{
  echo "127.0.0.1 localhost"
  echo "$NET.254 head"
  for ((i = 1; i <= NNODES; i++)); do echo "$NET.$i node$i"; done
  echo "::ffff:$NET.254 head"
  for ((i = 1; i <= NNODES; i++)); do echo "::ffff:$NET.$i node$i"; done
} >"$DIR/etc/hosts"

addrs="$(for ((i = 1; i <= NNODES; i++)); do printf '%s%s' "$([ "$i" = 1 ] || echo ,)" "$NET.$i"; done)"
cat >"$DIR/etc/slurm/slurm.conf" <<EOF
# Two-node test cluster in namespaces, written by gandist's scripts/slurm_multinode_up.sh.
ClusterName=gandist-mn
SlurmctldHost=head($NET.254)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=cred_expire=${GANDIST_MN_REQUEUE_DELAY:-10}
# No cgroups in a container: track processes by parent pid, bind no CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
# A node that was down registers again by itself (a crashed node that reboots takes jobs again).
ReturnToService=2
JobRequeue=1
KillWait=10
# A node silent this long is declared down, and its --requeue jobs go back to the queue.
SlurmdTimeout=${GANDIST_MN_NODE_TIMEOUT:-15}
InactiveLimit=0
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# debug: a node's log then shows each signal the controller sends it (tests read it).
SlurmdDebug=debug
NodeName=node[1-$NNODES] NodeAddr=$addrs CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=node[1-$NNODES] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

# The mount points the inits bind over (present wherever the packages are installed).
for path in /etc/slurm /etc/munge /run/munge /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /var/log/munge /var/lib/munge; do
  [ -d "$path" ] || mkdir -p "$path"
done

# 4. Namespaces -------------------------------------------------------------------------------
for name in head "${NODES[@]}"; do
  own="$DIR/ns/$name"
  mkdir -p "$own/run/munge" "$own/spool-d" "$own/spool-ctld" "$own/log"
  install -d -o munge -g munge -m 0700 "$own/munge-log"
  install -d -o munge -g munge -m 0711 "$own/munge-lib"
  setsid unshare --mount --uts --net --pid --fork --propagation private \
    "$DIR/bin/gandist-nsinit" "$name" "$DIR" </dev/null >"$own/init.log" 2>&1 &
done
for name in head "${NODES[@]}"; do
  for _ in $(seq 100); do init_pid "$name" >/dev/null && break; sleep 0.05; done
  init_pid "$name" >/dev/null || { cat "$DIR/ns/$name/init.log" >&2; die "the namespaces of $name did not start"; }
done
HEAD_PID="$(init_pid head)"
say "namespaces up: head $HEAD_PID, $(for n in "${NODES[@]}"; do printf '%s %s ' "$n" "$(init_pid "$n")"; done)"

# 5. Network, made inside the namespaces only -------------------------------------------------
nsenter -t "$HEAD_PID" -n ip link add br0 type bridge
nsenter -t "$HEAD_PID" -n ip addr add "$NET.254/24" dev br0
nsenter -t "$HEAD_PID" -n ip link set br0 up
for ((i = 1; i <= NNODES; i++)); do
  pid="$(init_pid "node$i")"
  # Made in the node's namespace with its peer moved straight into the head's: never the host's.
  nsenter -t "$pid" -n ip link add eth0 type veth peer name veth$i netns "$HEAD_PID"
  nsenter -t "$HEAD_PID" -n ip link set "veth$i" master br0 up
  nsenter -t "$pid" -n ip addr add "$NET.$i/24" dev eth0
  nsenter -t "$pid" -n ip link set eth0 up
done
say "network: head $NET.254 on br0, ${NODES[*]} at $NET.1-$NNODES"

# 6. Daemons ----------------------------------------------------------------------------------
"${ON[@]}" runuser -u munge -- /usr/sbin/munged || die "munged did not start: $(tail -5 "$DIR/ns/head/munge-log/munged.log" 2>/dev/null)"
for n in "${NODES[@]}"; do
  "${ON[@]}" -n "$n" bash -c 'munge -n | unmunge >/dev/null' || die "munge does not work from $n"
done
"${ON[@]}" /usr/sbin/slurmctld || die "slurmctld did not start: $(tail -20 "$DIR/ns/head/log/slurmctld.log" 2>/dev/null)"
for _ in $(seq 100); do "${ON[@]}" scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
"${ON[@]}" scontrol ping | grep -q UP || die "slurmctld does not answer: $(tail -20 "$DIR/ns/head/log/slurmctld.log")"
for n in "${NODES[@]}"; do
  "${ON[@]}" -n "$n" /usr/sbin/slurmd || die "slurmd on $n did not start: $(tail -20 "$DIR/ns/$n/log/slurmd.log" 2>/dev/null)"
done
say "munged, slurmctld and ${#NODES[@]} slurmds started; waiting for the nodes to be idle"

deadline=$((SECONDS + TIMEOUT))
while :; do
  states="$("${ON[@]}" sinfo -h -N -o '%N %T' 2>/dev/null | sort -u || true)"
  [ "$(grep -c ' idle$' <<<"$states" || true)" -eq "$NNODES" ] && break
  [ $SECONDS -lt $deadline ] || die "nodes not idle after ${TIMEOUT} s: $(tr '\n' ' ' <<<"$states")"
  sleep 0.5
done
say "cluster up: $(tr '\n' ' ' <<<"$states")(run commands with: bash $HERE/slurm_multinode_on.sh CMD)"
