#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine, as root, for tests and trials:
#
#   tools/slurm/cluster.sh start DIR   # munge + slurmctld + slurmd with state in DIR; waits until
#                                      # `sinfo` shows the node idle; prints `export SLURM_CONF=…`
#   tools/slurm/cluster.sh stop DIR    # stops every daemon `start DIR` started
#   tools/slurm/cluster.sh run CMD…    # start in a temporary folder, run CMD with SLURM_CONF set,
#                                      # stop on exit (even after a failure); exits with CMD's code
#
# One node with this machine's CPUs and memory, no cgroups (proctrack/linuxproc, task/none), its
# own munge key and socket, free TCP ports, logs in DIR (ctld.log, slurmd.log, munged.log). Needs
# Debian's `slurm-wlm` and `munge` (`.ci/run` installs them).
set -euo pipefail

die() { echo "slurm cluster: $*" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir; dir=$(realpath -m "$1")
    for b in munged slurmctld slurmd sinfo sbatch; do
        command -v "$b" >/dev/null || die "$b not found: install Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)"
    done
    [ "$(id -u)" = 0 ] || die "run as root (the daemons run as root here)"
    mkdir -p "$dir"/{ctld,spool,munge}
    chmod 700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    local host cpus mem ctld_port d_port
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    ctld_port=$(free_port)
    d_port=$(free_port)
    cat > "$dir/slurm.conf" <<CONF
ClusterName=i2i
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/ctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=600
JobRequeue=1
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    export SLURM_CONF="$dir/slurm.conf"
    # In the foreground of background processes (-D), so that `stop` knows their pids.
    slurmctld -D -i -f "$SLURM_CONF" >>"$dir/ctld.out" 2>&1 &
    echo $! > "$dir/slurmctld.bgpid"
    slurmd -D -f "$SLURM_CONF" >>"$dir/slurmd.out" 2>&1 &
    echo $! > "$dir/slurmd.bgpid"
    for _ in $(seq 1 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm cluster: the node did not come up idle in 30 s; logs in $dir:" >&2
    tail -n 20 "$dir/ctld.log" "$dir/slurmd.log" >&2 || true
    stop "$dir"
    exit 1
}

stop() {
    local dir; dir=$(realpath -m "$1")
    # Jobs first (their steps outlive slurmd otherwise), then the daemons, then any leftover
    # process of a job script in this cluster's spool folder.
    if [ -f "$dir/slurm.conf" ]; then
        SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
        sleep 1
    fi
    for f in slurmd slurmctld; do
        if [ -f "$dir/$f.bgpid" ]; then
            kill "$(cat "$dir/$f.bgpid")" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for f in slurmd slurmctld; do
        if [ -f "$dir/$f.bgpid" ]; then
            kill -9 "$(cat "$dir/$f.bgpid")" 2>/dev/null || true
            rm -f "$dir/$f.bgpid"
        fi
    done
    pkill -9 -f "$dir/spool/" 2>/dev/null || true
    if [ -f "$dir/munge/munged.pid" ]; then
        kill "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true
        rm -f "$dir/munge/munged.pid"
    fi
}

case "${1:-}" in
    start) [ $# -eq 2 ] || die "usage: cluster.sh start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: cluster.sh stop DIR"; stop "$2" ;;
    run)
        shift
        [ $# -ge 1 ] || die "usage: cluster.sh run CMD…"
        dir=$(mktemp -d "${TMPDIR:-/tmp}/i2i-slurm.XXXXXX")
        trap 'stop "$dir"; rm -rf "$dir"' EXIT
        start "$dir" >/dev/null
        export SLURM_CONF="$dir/slurm.conf"
        "$@"
        ;;
    *) die "usage: cluster.sh start DIR | stop DIR | run CMD…" ;;
esac
