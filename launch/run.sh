#!/usr/bin/env bash
# Start `gandist train` on every GPU of this node, on several Slurm nodes, or on the CPU.
#
#   launch/run.sh [--procs N] [gandist train args...]
#
# --procs N   processes per node (default: the node's GPU count, or 1 without GPUs;
#             N > 1 without GPUs runs N gloo processes on the CPU, see launch/cpu_2proc.yaml).
# Several nodes when Slurm says so (SLURM_NNODES > 1): run this once per node (one srun task
# per node); the first host of SLURM_JOB_NODELIST is the rendezvous, port $MASTER_PORT (29500).
#
# Environment: PYTHON (interpreter, default python), MASTER_PORT, GANDIST_LAUNCH_PRINT=1 (print
# the command instead of running it), PET_SIGNALS_TO_HANDLE / TORCH_ELASTIC_SHUTDOWN_TIMEOUT
# (defaults below).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"

procs=""
case "${1:-}" in
  --procs) procs="${2:?--procs needs a number}"; shift 2 ;;
  --procs=*) procs="${1#--procs=}"; shift ;;
esac
if [[ -n "$procs" && ! "$procs" =~ ^[1-9][0-9]*$ ]]; then
  echo "launch/run.sh: --procs must be a positive integer, got '$procs'" >&2
  exit 2
fi

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
fi
procs="${procs:-$(( gpus > 0 ? gpus : 1 ))}"
nodes="${SLURM_NNODES:-1}"

# The launcher (torchrun under accelerate launch) forwards these signals -- the same list as the
# sbatch scripts (slurm/*.sbatch) -- to every worker instead
# of dying and orphaning them (SIGUSR1 is Slurm's warning before preemption), then waits this
# long for the workers' checkpoint before killing them: keep it above a checkpoint save (docs/library_notes.md, note 9).
export PET_SIGNALS_TO_HANDLE="${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}"
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-600}"

first_host() {  # first host of a Slurm node list: "gpu[03-05,07],cpu1" -> gpu03
  # scontrol needs a Slurm config; where it is installed without one, parse the list ourselves.
  local hosts
  if command -v scontrol >/dev/null 2>&1 && hosts="$(scontrol show hostnames "$1" 2>/dev/null)" && [[ -n "$hosts" ]]; then
    echo "${hosts%%$'\n'*}"
    return
  fi
  local list="${1%%,*}"
  if [[ "$1" == *"["* ]]; then
    local prefix="${1%%[*}" inner="${1#*[}"
    list="${prefix}${inner%%[-,\]]*}"
  fi
  echo "$list"
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

launch=("$python" -m accelerate.commands.launch)
if (( nodes > 1 )); then
  main_ip="$(first_host "${SLURM_JOB_NODELIST:?multi-node needs SLURM_JOB_NODELIST}")"
  cmd=("${launch[@]}" --config_file "$here/multi_node.yaml"
       --num_machines "$nodes" --num_processes "$(( procs * nodes ))"
       --machine_rank "${SLURM_NODEID:?multi-node needs SLURM_NODEID}"
       --main_process_ip "$main_ip" --main_process_port "${MASTER_PORT:-29500}"
       -m gandist train "$@")
elif (( procs == 1 )); then
  # One process needs no launcher; exec lets Slurm's signals reach gandist directly.
  cmd=("$python" -m gandist train "$@")
else
  config="$here/one_node.yaml"
  (( gpus == 0 )) && config="$here/cpu_2proc.yaml"
  cmd=("${launch[@]}" --config_file "$config" --num_processes "$procs"
       --main_process_port "${MASTER_PORT:-$(free_port)}" -m gandist train "$@")
fi

if [[ "${GANDIST_LAUNCH_PRINT:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
