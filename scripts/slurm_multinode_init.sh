#!/bin/bash
# PID 1 of one node of the two-node test cluster (scripts/slurm_multinode_up.sh starts it under
# `unshare` as $GANDIST_MN_DIR/bin/gandist-nsinit; the name is how up/down recognise it).
#
#   gandist-nsinit NAME DIR
#
# Inside fresh mount, UTS, network and PID namespaces it gives the node its own hostname and
# loopback and puts the node's private directories over the paths Slurm and munge use by
# default, so the stock daemons run unchanged and never see the host's files. It then records
# its pid as the host sees it and waits: when it exits, the kernel kills everything left in
# its PID namespace and the network namespace (with its veth) disappears.
set -eu
name=$1 dir=$2 own=$2/ns/$1
read -r host_pid _ </proc/self/stat          # /proc is still the host's here: our pid out there
mount --make-rprivate /                      # no mount below leaks back to the host
mount -t proc proc /proc                     # ps, kill and Slurm's proctrack see this node only
mount --bind "$dir/etc/slurm" /etc/slurm
mount --bind "$dir/etc/munge" /etc/munge
mount --bind "$dir/etc/hosts" /etc/hosts
mount --bind "$own/run" /run
mount --bind "$dir/munge-run" /run/munge     # the head's munged serves every node
mount --bind "$own/spool-d" /var/spool/slurmd
mount --bind "$own/spool-ctld" /var/spool/slurmctld
mount --bind "$own/log" /var/log/slurm
mount --bind "$own/munge-log" /var/log/munge
mount --bind "$own/munge-lib" /var/lib/munge
hostname "$name"
ip link set lo up
echo "$host_pid" >"$dir/pids/$name.pid"
trap 'exit 0' TERM INT
set +e
# bash as PID 1 also reaps the orphans that the daemons' double forks leave to it
while :; do sleep 86400 & wait $!; done
