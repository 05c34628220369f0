#!/usr/bin/env bash
# A real Slurm cluster on one Linux machine, for tests and by hand (root).
#
#   scripts/slurm_local.sh up [NODES]     # controller + NODES compute nodes (default 2)
#   scripts/slurm_local.sh shape RATE     # tbf-shape every node's link (100mbit, 1gbit; `none` removes it)
#   scripts/slurm_local.sh status         # exit 0 when the cluster is up and its nodes answer
#   scripts/slurm_local.sh down           # stop every daemon and job process, remove everything `up` made
#
# Installs Debian's Slurm (slurm-wlm: slurmctld, slurmd) and munge with apt-get when missing.
#
# Topology. Compute node i is a network namespace `ttaslurm-n{i}` with its own
# hostname (slurmd runs under `unshare --uts`), one veth `ttasl{i}` (address
# 10.231.SUBNET.{i+1}/24) whose peer `ttasl{i}-br` is a port of the bridge
# `ttaslurm-br` in the root namespace; /etc/hosts names every node's address
# (a marked block, removed by `down`), as a cluster's DNS would. The controller (slurmctld, hostname
# `ttactl`) and munge run in the root namespace on the bridge's address
# 10.231.SUBNET.254, so sbatch/squeue/scancel work from the machine as on a
# login node. Every namespace shares the file system, so a results folder in
# /tmp is a "shared file system" for all nodes.
#
# Why not `ttabench netlab up`: netlab never touches the root namespace and
# refuses to start while any other netlab namespace exists; a cluster needs its
# controller reachable from the root namespace and must coexist with netlab.
# The shaping is the same as netlab's: a tbf on each end of a node's veth
# (uplink on the node side, downlink on the bridge side), burst max(64 KiB, 2 ms
# at the rate), queue limit 5 ms at the rate.
#
# State lives in $TTABENCH_SLURM_DIR (default /run/ttabench-slurm): the config,
# logs, spool and pid files, and `made`, one line per object created, which
# `down` reads (so a half-finished `up` is still torn down). The config is
# also written to /etc/slurm/slurm.conf (where sbatch looks), unless a
# slurm.conf that this script did not write is already there.
set -Eeuo pipefail  # -E: the ERR trap of `up` also fires inside its functions

DIR="${TTABENCH_SLURM_DIR:-/run/ttabench-slurm}"
SUBNET="${TTABENCH_SLURM_SUBNET:-200}"
NET="10.231.${SUBNET}"
CTL_ADDR="${NET}.254"
BRIDGE=ttaslurm-br
NS_PREFIX=ttaslurm-n
ETC_CONF=/etc/slurm/slurm.conf
MARK="# written by ttabench scripts/slurm_local.sh"
CTL_PORT=6817

die() { echo "slurm_local: error: $*" >&2; exit 2; }
say() { echo "slurm_local: $*"; }
made() { echo "$*" >>"$DIR/made"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces and starts Slurm's daemons): run it with sudo"
    for t in ip tc unshare; do
        command -v "$t" >/dev/null || die "needs \`$t\` on PATH (iproute2, util-linux)"
    done
}

install_slurm() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get: install slurmctld, slurmd and munge"
    say "installing slurm-wlm and munge (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n >/dev/null 2>&1; then
        return  # the machine's own munged: use it, leave it running
    fi
    [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 2>/dev/null; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
    # munged runs as its own user, which can write its pid file only in its own folder.
    runuser -u munge -- munged --pid-file /run/munge/ttabench-munged.pid 2>/dev/null \
        || munged --force --pid-file /run/munge/ttabench-munged.pid
    made "pid /run/munge/ttabench-munged.pid"
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && return; sleep 0.1; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

write_config() {
    local nodes=$1 cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
    mkdir -p "$DIR/ctld"
    cat >"$DIR/slurm.conf" <<EOF
$MARK
ClusterName=ttalocal
SlurmctldHost=ttactl($CTL_ADDR)
SlurmctldPort=$CTL_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool-%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$DIR/task_prolog.sh
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=10
InactiveLimit=0
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
EOF
    for ((i = 0; i < nodes; i++)); do
        echo "NodeName=ttanode$i NodeAddr=$NET.$((i + 1)) CPUs=$cpus RealMemory=$mem State=UNKNOWN" >>"$DIR/slurm.conf"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4" >>"$DIR/slurm.conf"
    printf '%s\nCgroupPlugin=cgroup/v1\nIgnoreSystemd=yes\n' "$MARK" >"$DIR/cgroup.conf"
    # Each task learns the real shaping of its node's link (a run records it in config.json).
    cat >"$DIR/task_prolog.sh" <<EOF
#!/bin/sh
[ -s "$DIR/shaping.json" ] && echo "export TTABENCH_NETLAB=\$(cat "$DIR/shaping.json")"
exit 0
EOF
    chmod +x "$DIR/task_prolog.sh"
    mkdir -p /etc/slurm
    if [ -e "$ETC_CONF" ] && ! grep -qF "$MARK" "$ETC_CONF"; then
        say "note: $ETC_CONF is not ours and stays; use SLURM_CONF=$DIR/slurm.conf"
    else
        cp "$DIR/slurm.conf" "$ETC_CONF" && cp "$DIR/cgroup.conf" /etc/slurm/cgroup.conf
        made "file $ETC_CONF" && made "file /etc/slurm/cgroup.conf"
    fi
}

make_network() {
    local nodes=$1
    ip link add "$BRIDGE" type bridge && made "link $BRIDGE"
    ip addr add "$CTL_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for ((i = 0; i < nodes; i++)); do
        local ns="$NS_PREFIX$i"
        ip netns add "$ns" && made "netns $ns"
        ip -n "$ns" link set lo up
        ip link add "ttasl$i-br" type veth peer name "ttasl$i" netns "$ns" && made "link ttasl$i-br"
        ip link set "ttasl$i-br" master "$BRIDGE"
        ip link set "ttasl$i-br" up
        ip -n "$ns" addr add "$NET.$((i + 1))/24" dev "ttasl$i"
        ip -n "$ns" link set "ttasl$i" up
    done
}

HOSTS_BEGIN="# ttabench slurm_local.sh: cluster host names (begin)"
HOSTS_END="# ttabench slurm_local.sh: cluster host names (end)"

add_hosts() {  # every node's name resolves to its address on the bridge, as on a real cluster
    local nodes=$1
    {
        echo "$HOSTS_BEGIN"
        echo "$CTL_ADDR ttactl"
        for ((i = 0; i < nodes; i++)); do echo "$NET.$((i + 1)) ttanode$i"; done
        echo "$HOSTS_END"
    } >>/etc/hosts
}

remove_hosts() {  # in place: /etc/hosts may be a bind mount that cannot be replaced
    grep -qF "$HOSTS_BEGIN" /etc/hosts 2>/dev/null || return 0
    local kept
    kept=$(awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '$0 == b {skip = 1} !skip {print} $0 == e {skip = 0}' /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
}

start_daemons() {
    local nodes=$1
    # slurmctld checks that its host name is the SlurmctldHost's.
    unshare --uts sh -c "hostname ttactl && exec slurmctld -f '$DIR/slurm.conf'"
    made "pid $DIR/slurmctld.pid"
    for ((i = 0; i < nodes; i++)); do
        ip netns exec "$NS_PREFIX$i" unshare --uts \
            sh -c "hostname ttanode$i && exec slurmd -f '$DIR/slurm.conf' -N ttanode$i"
        made "pid $DIR/slurmd-ttanode$i.pid"
    done
}

wait_idle() {
    local nodes=$1
    for _ in $(seq 150); do
        local idle
        idle=$(sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle' || true)
        [ "$idle" -ge "$nodes" ] && return 0
        sleep 0.2
    done
    sinfo -N 2>&1 || true
    die "the nodes did not become idle within 30 s (logs: $DIR/*.log)"
}

cmd_up() {
    local nodes=${1:-2}
    [[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 16 ] || die "NODES must be 1..16, got $nodes"
    need_root
    if [ -e "$DIR/made" ]; then
        cmd_status >/dev/null 2>&1 && die "a local cluster is already up (state in $DIR): scripts/slurm_local.sh down first"
        say "removing what an earlier up left behind (state in $DIR, cluster not answering)"
        cmd_down >/dev/null
    fi
    remove_strays
    install_slurm
    mkdir -p "$DIR" && : >"$DIR/made"
    trap 'echo "slurm_local: up failed; removing what it made" >&2; cmd_down >/dev/null 2>&1 || true' ERR
    echo "$nodes" >"$DIR/nodes"
    start_munge
    write_config "$nodes"
    make_network "$nodes"
    add_hosts "$nodes"
    start_daemons "$nodes"
    wait_idle "$nodes"
    trap - ERR
    say "up: controller ttactl ($CTL_ADDR), nodes $(seq -s ' ' -f 'ttanode%g' 0 $((nodes - 1))), partition debug; config $ETC_CONF"
}

tbf_args() {  # RATE in bits/s -> tbf rate, burst max(64 KiB, 2 ms at the rate), 5 ms queue
    local bits=$1
    local burst=$((bits / 8 / 500))
    [ "$burst" -lt 65536 ] && burst=65536
    echo "tbf rate ${bits}bit burst $burst latency 5ms"
}

rate_bits() {  # 100mbit, 1gbit, 10kbit, 500bit -> bits/s
    local r=${1,,}
    [[ "$r" =~ ^([0-9]+)(bit|kbit|mbit|gbit)$ ]] || die "RATE must look like 100mbit or 1gbit, got $1"
    local n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]}
    case $u in bit) echo "$n" ;; kbit) echo $((n * 1000)) ;; mbit) echo $((n * 1000000)) ;; gbit) echo $((n * 1000000000)) ;; esac
}

cmd_shape() {
    local rate=${1:-}
    [ -n "$rate" ] || die "usage: slurm_local.sh shape RATE|none"
    need_root
    [ -e "$DIR/nodes" ] || die "no local cluster is up"
    local nodes bits
    nodes=$(cat "$DIR/nodes")
    if [ "$rate" = none ]; then
        for ((i = 0; i < nodes; i++)); do
            tc -n "$NS_PREFIX$i" qdisc del dev "ttasl$i" root 2>/dev/null || true
            tc qdisc del dev "ttasl$i-br" root 2>/dev/null || true
        done
        rm -f "$DIR/shaping.json"
        say "links unshaped"
        return
    fi
    bits=$(rate_bits "$rate")
    # shellcheck disable=SC2046
    for ((i = 0; i < nodes; i++)); do
        tc -n "$NS_PREFIX$i" qdisc replace dev "ttasl$i" root handle 1: $(tbf_args "$bits")
        tc qdisc replace dev "ttasl$i-br" root handle 1: $(tbf_args "$bits")
    done
    local burst
    burst=$(tbf_args "$bits" | awk '{print $5}')
    printf '{"mechanism": "slurm_local.sh (network namespaces, veth, bridge, tc tbf)", "hosts": %d, "rate": "%s", "rate_bytes_per_s": %s, "burst_bytes": %d, "delay": null, "delay_s": null, "shape": "both", "subnet": "%s.0/24"}\n' \
        "$nodes" "$rate" "$((bits / 8))" "$burst" "$NET" >"$DIR/shaping.json.tmp"
    mv "$DIR/shaping.json.tmp" "$DIR/shaping.json"
    say "every node's uplink and downlink shaped to $rate (tbf)"
}

kill_pidfile() {
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

remove_strays() {  # our daemons, namespaces, links and host names without a state file that names them (a lost $DIR)
    local ns link
    remove_hosts
    pkill -KILL -f "^slurmctld -f $DIR/slurm.conf" 2>/dev/null || true
    for ns in $(ip netns list | awk '{print $1}' | grep "^$NS_PREFIX[0-9]*$" || true); do
        ip netns pids "$ns" | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^($BRIDGE|ttasl[0-9]+-br)$" || true); do
        ip link del "$link" 2>/dev/null || true
    done
}

cmd_down() {
    need_root
    if [ ! -e "$DIR/made" ]; then
        say "nothing to remove (no state in $DIR)"
        return 0
    fi
    # Jobs first: every process inside a node's namespace (slurmd, slurmstepd, the job's own).
    scancel --full --quiet --user=root 2>/dev/null || true
    local obj
    while read -r kind obj; do
        if [ "$kind" = netns ] && [ -e "/run/netns/$obj" ]; then
            ip netns pids "$obj" | xargs -r kill -TERM 2>/dev/null || true
        fi
    done <"$DIR/made"
    for f in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid"; do kill_pidfile "$f"; done
    sleep 0.5
    while read -r kind obj; do
        if [ "$kind" = netns ] && [ -e "/run/netns/$obj" ]; then
            ip netns pids "$obj" | xargs -r kill -KILL 2>/dev/null || true
        fi
    done <"$DIR/made"
    tac "$DIR/made" | while read -r kind obj; do
        case $kind in
            pid) kill_pidfile "$obj" ;;
            netns) ip netns del "$obj" 2>/dev/null || true ;;
            link) ip link del "$obj" 2>/dev/null || true ;;
            file) if grep -qF "$MARK" "$obj" 2>/dev/null; then rm -f "$obj"; fi ;;
        esac
    done
    rm -rf "$DIR"
    remove_strays
    say "down: daemons stopped, namespaces and bridge removed"
}

cmd_status() {
    if [ ! -e "$DIR/nodes" ]; then
        say "no local cluster (no state in $DIR)"
        return 1
    fi
    say "state in $DIR, $(cat "$DIR/nodes") nodes$([ -s "$DIR/shaping.json" ] && echo ", shaped: $(cat "$DIR/shaping.json")")"
    sinfo -N -o '%N %T %c %P' || return 1
    squeue -o '%i %j %T %M %N' || return 1
    local down
    down=$(sinfo -h -N -o '%T' | grep -cvE '^(idle|allocated|mixed|completing)' || true)
    [ "$down" -eq 0 ]
}

case "${1:-}" in
    up) shift && cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    shape) shift && cmd_shape "$@" ;;
    *) echo "usage: $0 up [NODES] | shape RATE|none | status | down" >&2 && exit 2 ;;
esac
