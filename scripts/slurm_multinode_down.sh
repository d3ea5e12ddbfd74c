#!/usr/bin/env bash
# Stop the two-node test cluster of scripts/slurm_multinode_up.sh, and nothing else.
#
#   sudo bash scripts/slurm_multinode_down.sh
#
# 1. cancels its jobs; 2. stops each node's slurmd, then slurmctld and munged, by the pid files
# inside their own namespaces; 3. stops each namespace's init by its recorded host pid: the
# kernel then kills whatever is left in that PID namespace, and the network namespace with its
# veth (and the head's bridge) goes with it; 4. checks that no process of the cluster is left
# and removes its state (GANDIST_MN_KEEP_LOGS=1 keeps $GANDIST_MN_DIR/ns/*/log). The host's own
# Slurm is not touched. Exits 1 if something of the cluster survived.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${GANDIST_MN_DIR:-/tmp/gandist-mn}"
ON=(bash "$HERE/slurm_multinode_on.sh")
export GANDIST_MN_DIR="$DIR"
say() { echo "slurm_multinode_down: $*" >&2; }

init_pid() {
  local pid
  pid="$(cat "$DIR/pids/$1.pid" 2>/dev/null)" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = gandist-nsinit ] || return 1
  echo "$pid"
}
names=()
for f in "$DIR"/pids/*.pid; do [ -e "$f" ] && names+=("$(basename "$f" .pid)"); done
[ ${#names[@]} -gt 0 ] || say "no node of the cluster was recorded under $DIR/pids"

if init_pid head >/dev/null; then
  timeout 15 "${ON[@]}" scancel --full --user=root >/dev/null 2>&1 && sleep 1 || true
fi

stop_daemon() {  # stop_daemon NODE PIDFILE NAME: SIGTERM, then wait up to 10 s (both inside NODE)
  init_pid "$1" >/dev/null || return 0
  timeout 20 "${ON[@]}" -n "$1" bash -c '
    pid="$(cat "$1" 2>/dev/null)" || exit 0
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || exit 0
    kill -TERM "$pid"
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || exit 0; sleep 0.1; done
    echo "$2 ignored SIGTERM; stopping its node takes it down" >&2' _ "$2" "$3" || true
}
for n in "${names[@]}"; do [ "$n" = head ] || stop_daemon "$n" /run/slurmd.pid slurmd; done
stop_daemon head /run/slurmctld.pid slurmctld
stop_daemon head /run/munge/munged.pid munged

for n in "${names[@]}"; do
  pid="$(init_pid "$n")" || continue
  kill -TERM "$pid"
  for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then say "init of $n (pid $pid) did not stop: SIGKILL"; kill -KILL "$pid"; sleep 0.5; fi
  say "node $n stopped (init pid $pid)"
done

# Every process of the cluster lived in those PID namespaces: none may be left. Match this
# directory only, so a cluster started with another GANDIST_MN_DIR stays up.
left="$(ps -eo pid=,args= | grep -F "$DIR/bin/gandist-nsinit " | grep -v grep || true)"
if [ "${GANDIST_MN_KEEP_LOGS:-0}" = 1 ]; then
  find "$DIR/ns" -mindepth 2 -maxdepth 2 ! -name log -exec rm -rf {} + 2>/dev/null
else
  rm -rf "$DIR/ns"
fi
rm -rf "$DIR/pids" "$DIR/etc" "$DIR/munge-run" "$DIR/bin"
if [ -n "$left" ]; then
  say "still running:"; echo "$left" >&2
  exit 1
fi
say "nothing of the cluster is left (state under $DIR removed)"
