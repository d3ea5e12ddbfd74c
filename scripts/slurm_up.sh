#!/usr/bin/env bash
# A real one-node Slurm on this machine, so tests/test_slurm_*.py run against a controller.
#
#   sudo bash scripts/slurm_up.sh          # start (or check) it
#   sudo bash scripts/slurm_up.sh --down   # stop the daemons this script started
#
# As root, on Debian/Ubuntu: installs the distribution's Slurm and munge packages when missing
# (apt-get), writes a one-node configuration (every CPU of this machine, partition `debug`,
# no accounting, no cgroups) and keeps all state -- config, spool, logs, pid files -- under
# $GANDIST_SLURM_DIR (default /tmp/gandist-slurm), starts munged, slurmctld and slurmd, and waits
# until the node is idle. Idempotent: with a controller already answering `sinfo`, or our
# daemons running, it changes nothing. scripts/test.sh calls it before the tests.
#
# The clients (sinfo, sbatch) read /etc/slurm/slurm.conf, so the config is also copied there,
# unless GANDIST_SLURM_ETC=0: then export SLURM_CONF=$GANDIST_SLURM_DIR/slurm.conf yourself (that
# way a second, private cluster can run beside another one: set GANDIST_SLURM_PORT too).
#
# Knobs: GANDIST_SLURM_DIR, GANDIST_SLURM_PORT (slurmctld's port, slurmd uses the next one;
# default 6817), GANDIST_SLURM_ETC (1), GANDIST_SLURM_TIMEOUT (seconds to wait for idle, 60),
# GANDIST_SLURM_REQUEUE_DELAY (seconds before a requeued job may start again, 10).
set -euo pipefail

DIR="${GANDIST_SLURM_DIR:-/tmp/gandist-slurm}"
PORT="${GANDIST_SLURM_PORT:-6817}"
TIMEOUT="${GANDIST_SLURM_TIMEOUT:-60}"
CONF="$DIR/slurm.conf"
say() { echo "slurm_up: $*" >&2; }
die() { say "error: $*"; exit 1; }

# A pid file of ours counts only while that process lives under the expected name (pids are
# reused; a zombie is not running).
ours() {  # ours NAME -> prints the pid when our NAME daemon runs
  local pidfile="$DIR/run/$1.pid" pid state
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  echo "$pid"
}

if [ "${1:-}" = "--down" ]; then
  for name in slurmd slurmctld munged; do
    if pid="$(ours "$name")"; then
      kill "$pid" && say "stopped $name (pid $pid)"
    fi
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

if [ -z "$(ours slurmctld || true)" ] && command -v sinfo >/dev/null \
    && [ -n "$(sinfo -h -o %T 2>/dev/null | grep -E '^(idle|mixed|allocated)' || true)" ]; then
  say "a Slurm controller already answers: nothing to do"
  exit 0
fi

# 1. Packages ---------------------------------------------------------------------------------
mkdir -p "$DIR/run" "$DIR/log" "$DIR/spool/ctld" "$DIR/spool/d"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it"
  say "installing slurmctld slurmd slurm-client munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  packages=(slurmctld slurmd slurm-client munge)
  { apt-get install -y -q --no-install-recommends "${packages[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; }; } >"$DIR/log/apt.log" 2>&1 \
    || { tail -20 "$DIR/log/apt.log" >&2; die "apt-get install failed (log: $DIR/log/apt.log)"; }
fi

# 2. munge: Slurm's daemons and clients authenticate every message with it --------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key; else create-munge-key -f; fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged </dev/null >"$DIR/log/munged.out" 2>&1 || die "munged did not start ($DIR/log/munged.out)"
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$DIR/run/munged.pid"
  say "started munged (pid $(cat "$DIR/run/munged.pid"))"
  munge -n | unmunge >/dev/null || die "munge does not work"
fi

# 3. The one-node configuration ---------------------------------------------------------------
node="$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)"
mem_mb=$(( $(awk '/^MemTotal:/{print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
cat >"$CONF.new" <<EOF
# One-node Slurm for gandist's tests, written by scripts/slurm_up.sh.
ClusterName=gandist
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${PORT}
SlurmdPort=$(( PORT + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=cred_expire=${GANDIST_SLURM_REQUEUE_DELAY:-10}
# No cgroups in containers: track processes by parent pid, bind no CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No slurmdbd: no accounting (sacct); finished jobs stay visible to squeue/scontrol for an hour.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
# Schedule every 1-2 s instead of every 30-60 s, so requeued jobs restart promptly.
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=10
InactiveLimit=0
MailProg=/bin/true
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(( mem_mb > 0 ? mem_mb : 1 )) State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
changed=0
if ! cmp -s "$CONF.new" "$CONF"; then
  mv "$CONF.new" "$CONF" && changed=1
else
  rm -f "$CONF.new"
fi
export SLURM_CONF="$CONF"
if [ "${GANDIST_SLURM_ETC:-1}" = 1 ]; then
  install -d -m 0755 /etc/slurm
  cmp -s "$CONF" /etc/slurm/slurm.conf || install -m 0644 "$CONF" /etc/slurm/slurm.conf
fi

# 4. Daemons ----------------------------------------------------------------------------------
start() {  # start NAME ARGS...: the daemons fork and close stdio themselves (no -D), so a caller
  local name=$1; shift  # capturing our output is not held open by them.
  rm -f "$DIR/run/$name.pid"
  "/usr/sbin/$name" -f "$CONF" "$@" </dev/null >"$DIR/log/$name.out" 2>&1 \
    || { tail -20 "$DIR/log/$name.out" "$DIR/log/$name.log" >&2 2>/dev/null; die "$name did not start"; }
  for _ in $(seq 100); do ours "$name" >/dev/null && break; sleep 0.1; done
  ours "$name" >/dev/null || { tail -20 "$DIR/log/$name.log" >&2 2>/dev/null; die "$name did not stay up"; }
  say "started $name (pid $(ours "$name"))"
}
if pid="$(ours slurmctld)"; then
  [ "$changed" = 1 ] && scontrol reconfigure >/dev/null 2>&1 || true
else
  start slurmctld
fi
ours slurmd >/dev/null || start slurmd -N "$node"

# 5. Wait until the node takes jobs -----------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  state="$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|fail*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
    die "node $node not idle after ${TIMEOUT}s (state '$state')"
  fi
  sleep 0.5
done
say "node $node is $state (config $CONF)"
