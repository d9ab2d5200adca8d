#!/usr/bin/env bash
# Bring up / tear down a real Slurm cluster for tests: a controller and N compute
# nodes, each node a host of its own on this machine (network and UTS namespace,
# own hostname and address, on a bridge), sharing the file system and munge.
#
#   tests/slurm/cluster.sh up [--nodes N] | down [--purge] | status | restart-ctld
#                          | kill-slurmd NODE | kill-node NODE
#
# Everything (config, state, logs, pid files, munge key, MariaDB data) lives in
# ${SLURM_TEST_DIR:-/tmp/snakemake-quantum-slurm}. Daemons are started in the
# background by this script and stopped by the pids it recorded; nothing is
# ever killed by name. See README.md next to this file.
set -euo pipefail

D=${SLURM_TEST_DIR:-/tmp/snakemake-quantum-slurm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${SLURM_TEST_TIMEOUT:-90} # seconds to wait for each daemon
ACCOUNT=quantum
QPU_TYPES=${SLURM_TEST_QPU_TYPES:-aer_sim:qiskit-aer,sim2:vqpu}
export SLURM_CONF=$D/slurm.conf
MUNGE_SOCKET=$D/munge/munge.socket
DB_SOCKET=$D/mariadb/mariadbd.sock
PKGS=(slurm-wlm munge slurmdbd mariadb-server libslurm-dev gcc iproute2)
MARK="snakemake-quantum-slurm:$D" # tags the /etc/hosts lines this cluster added

# The cluster's shape. Its record (cluster.env) wins over the environment, so
# status, down, kill-* act on the cluster that exists; only an 'up' that starts
# a stopped cluster anew reads the environment (and --nodes) again.
settings_from_env() {
  NODES=${SLURM_TEST_NODES:-1}
  ACCOUNTING=${SLURM_TEST_ACCOUNTING:-slurmdbd} # slurmdbd | none
  CLUSTER=${SLURM_TEST_CLUSTER:-quantumtest}
  PREFIX=${SLURM_TEST_PREFIX:-qt}     # namespaces, interfaces, hostnames
  SUBNET=${SLURM_TEST_SUBNET:-10.199.7} # a /24 that exists only on our bridge
  CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
  SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}
  DBD_PORT=${SLURM_TEST_DBD_PORT:-6819}
  DB_PORT=${SLURM_TEST_DB_PORT:-43306} # MariaDB (TCP, 127.0.0.1 only)
  CPUS=${SLURM_TEST_CPUS:-$(nproc)}
}
SETTINGS=(NODES ACCOUNTING CLUSTER PREFIX SUBNET CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT CPUS)
settings_from_env
# shellcheck source=/dev/null
[[ ! -f $D/cluster.env ]] || . "$D/cluster.env"

save_settings() {
  local v
  for v in "${SETTINGS[@]}"; do printf '%s=%q\n' "$v" "${!v}"; done >"$D/cluster.env"
}

# Node k (1..N): the first N-1 form partition cpu, the last is the gpu node
# (partitions gpu and quantum, GRES qpu:2 and gpu:1). One node is all of them.
node_names() {
  local k
  for ((k = 1; k < NODES; k++)); do echo "$PREFIX-cpu$k"; done
  echo "$PREFIX-gpu1"
}
node_addr() { # NAME -> address on the bridge
  local k=0 n
  for n in $(node_names); do
    k=$((k + 1))
    [[ $n != "$1" ]] || { echo "$SUBNET.$((10 + k))"; return; }
  done
  return 1
}
gpu_node() { echo "$PREFIX-gpu1"; }
ctl_host() { echo "$PREFIX-ctl"; }
bridge() { echo "$PREFIX-br"; }
node_partition() { if [[ $1 == "$(gpu_node)" ]]; then echo gpu; else echo cpu; fi; }

# fd 3 = the caller's stderr, so messages still show from inside commands
# whose output is silenced (e.g. the readiness probes in wait_until).
exec 3>&2
log() { echo "cluster.sh: $*" >&3; }

# die MSG [LOGFILE]: one-line error, then the tail of the relevant log.
die() {
  log "ERROR: $1"
  if [[ -n ${2:-} && -f $2 ]]; then
    echo "---- last lines of $2 ----" >&3
    tail -n 25 "$2" >&3
  fi
  exit 1
}

# Daemons, in start order; per-node slurmd pid files are named slurmd.NODE.
daemons() {
  local d=(munged)
  [[ $ACCOUNTING == none ]] || d+=(mariadbd slurmdbd)
  d+=(slurmctld)
  # shellcheck disable=SC2046 # one word per node
  echo "${d[@]}" $(node_names | sed 's/^/slurmd./')
}

pidfile() { echo "$D/pids/$1.pid"; }

# Print the pid of daemon $1 if it is alive (and really is that program:
# guards against pid reuse after a reboot or a crash).
live_pid() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "${1%%.*}" ]] || return 1
  echo "$pid"
}

logfile() {
  case $1 in
    munged) echo "$D/log/munged.out" ;; # in --foreground it logs to stderr only
    mariadbd) echo "$D/mariadb/mariadbd.log" ;;
    *) echo "$D/log/$1.log" ;;
  esac
}

# start NAME CMD...: run CMD in its own session (so the caller's job control or
# process-group kills don't take it down) and record its pid. Its stdio goes to
# a log and fd 3 is closed, so it holds no pipe of the caller open (a caller
# capturing our output would otherwise never see EOF). setsid does not
# fork here because a background child of a non-interactive shell is not a
# process-group leader; nsenter and unshare exec too, so $! is the
# daemon's own pid.
start() {
  local name=$1 pid i
  shift
  setsid "$@" >>"$D/log/$name.out" 2>&1 </dev/null 3>&- &
  pid=$!
  echo $pid >"$(pidfile "$name")"
  # Until the exec chain (nsenter, unshare, sh) reaches the daemon, live_pid would
  # take it for dead.
  for ((i = 0; i < 100; i++)); do
    [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) != "${name%%.*}" ]] || return 0
    sleep 0.05
  done
}

# wait_until NAME DESCRIPTION CMD...: poll CMD with a short backoff until it
# succeeds; fail fast if the daemon died, or after $TIMEOUT seconds.
wait_until() {
  local name=$1 what=$2 delay=0.1 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    live_pid "$name" >/dev/null || die "$name exited before $what" "$(logfile "$name")"
    ((SECONDS - start < TIMEOUT)) || die "$name: timed out after ${TIMEOUT}s waiting for $what" "$(logfile "$name")"
    sleep "$delay"
    delay=$(awk -v d="$delay" 'BEGIN { d *= 2; print (d > 1 ? 1 : d) }')
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_port() { port_free "$1" || die "port $1 (for $2) is already in use on 127.0.0.1; set $3"; }

# stop NAME...: SIGTERM them all at once, wait for them to exit (SIGKILL after
# 30 s), remove their pid files. Daemons that must outlive others are stopped
# in a later call.
stop() {
  local name pid i t0=$SECONDS pids=() names=()
  for name in "$@"; do
    if pid=$(live_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
  done
  for i in "${!pids[@]}"; do
    pid=${pids[i]}
    while [[ -d /proc/$pid ]] && ((SECONDS - t0 < 30)); do sleep 0.1; done
    if [[ -d /proc/$pid ]]; then
      log "${names[i]} (pid $pid) ignored SIGTERM for 30s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while [[ -d /proc/$pid ]]; do sleep 0.1; done
    fi
    log "stopped ${names[i]} (pid $pid) after $((SECONDS - t0))s"
  done
  for name in "$@"; do rm -f "$(pidfile "$name")"; done
}

# --------------------------------------------------------------- install ---
install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  # Keep the packages' maintainer scripts from starting system-wide munge /
  # mariadb / slurm services: we run our own copies.
  local policy=/usr/sbin/policy-rc.d ours=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
  if ! "${apt[@]}" >"$D/log/apt.log" 2>&1; then
    apt-get update >>"$D/log/apt.log" 2>&1 || true
    "${apt[@]}" >>"$D/log/apt.log" 2>&1 || { [[ -z $ours ]] || rm -f "$policy"; die "apt-get install failed" "$D/log/apt.log"; }
  fi
  [[ -z $ours ]] || rm -f "$policy"
}

# --------------------------------------------------------------- network ---
# A bridge on the host carries $SUBNET.1 (the controller's address); each node
# is a network namespace of the same name with one veth pair to the bridge.
# Nodes get no default route: they reach each other and the controller only.
net_up() {
  local br n ns
  br=$(bridge)
  if ! ip link show "$br" >/dev/null 2>&1; then
    ip link add "$br" type bridge
    ip addr add "$SUBNET.1/24" dev "$br"
  fi
  ip link set "$br" up
  for n in $(node_names); do
    ns=$n
    # A name whose namespace is gone (an empty file, not a mount: left by a namespace
    # made inside another mount namespace) would make every 'ip -n' fail.
    if [[ -e /run/netns/$ns ]] && ! mountpoint -q "/run/netns/$ns"; then rm -f "/run/netns/$ns"; fi
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    if ! ip link show "$n" >/dev/null 2>&1; then
      ip link add "$n" type veth peer name "$n-p"
      ip link set "$n-p" netns "$ns"
      ip -n "$ns" link set "$n-p" name eth0
      ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
      ip link set "$n" master "$br"
    fi
    ip link set "$n" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  hosts_add
}

# Processes of a node (slurmd, job steps, jobs, vQPUs): whatever lives in its
# network namespace, and nothing else.
ns_pids() { [[ ! -e /run/netns/$1 ]] || ip netns pids "$1" 2>/dev/null || true; }

# kill_ns NODE: SIGTERM every process in the node, SIGKILL what is left after 5 s.
kill_ns() {
  local pids i
  pids=$(ns_pids "$1")
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pids=$(ns_pids "$1")
    [[ -n $pids ]] || return 0
    sleep 0.1
  done
  log "node $1: SIGKILL to $(echo "$pids" | wc -w) process(es) left after SIGTERM"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do [[ -n $(ns_pids "$1") ]] || return 0; sleep 0.1; done
}

net_down() {
  local n
  for n in $(node_names); do
    kill_ns "$n"
    ! ip link show "$n" >/dev/null 2>&1 || ip link del "$n"
    [[ ! -e /run/netns/$n ]] || ip netns del "$n" 2>/dev/null || rm -f "/run/netns/$n"
  done
  ! ip link show "$(bridge)" >/dev/null 2>&1 || ip link del "$(bridge)"
  hosts_remove
}

# Node names must resolve on every host (a vQPU advertises its host name), as
# a site's DNS would do; /etc/hosts is shared by all of them. Rewritten in
# place: in containers /etc/hosts is often a bind mount that rename cannot replace.
hosts_add() {
  local n lines
  lines="$SUBNET.1 $(ctl_host) # $MARK"
  for n in $(node_names); do lines+=$'\n'"$(node_addr "$n") $n # $MARK"; done
  [[ $(grep -F "# $MARK" /etc/hosts 2>/dev/null || true) == "$lines" ]] && return 0
  hosts_remove
  printf '%s\n' "$lines" >>/etc/hosts
}

hosts_remove() {
  local kept
  grep -qF "# $MARK" /etc/hosts 2>/dev/null || return 0
  kept=$(grep -vF "# $MARK" /etc/hosts || true)
  printf '%s\n' "$kept" >/etc/hosts
}

# ---------------------------------------------------------------- config ---
write_config() {
  local mem real_cpus overrides="" n gres_nodes nodes_conf="" cpu_nodes
  real_cpus=$(nproc)
  # slurmd would drain a node that claims more CPUs than it has, unless told
  # to report the configured values instead.
  ((CPUS <= real_cpus)) || overrides="SlurmdParameters=config_overrides"
  # RealMemory must not exceed what slurmd detects; use 3/4 of MemAvailable.
  # Every node sees the whole machine; jobs ask for little.
  mem=$(awk '/^MemAvailable:/ { print int($2 / 1024 * 3 / 4) }' /proc/meminfo)

  mkdir -p "$D"/{pids,log,run,state,spool,dev,lib}
  : >"$D/dev/qpu0"
  : >"$D/dev/qpu1"
  : >"$D/dev/gpu0"

  for n in $(node_names); do
    gres_nodes=""
    [[ $n != "$(gpu_node)" ]] || gres_nodes=" Gres=qpu:2,gpu:1"
    nodes_conf+="NodeName=$n NodeAddr=$(node_addr "$n") CPUs=$CPUS RealMemory=$mem$gres_nodes State=UNKNOWN"$'\n'
  done
  cpu_nodes=$(node_names | paste -sd,)
  ((NODES == 1)) || cpu_nodes=$(node_names | grep -vx "$(gpu_node)" | paste -sd,)

  local acct
  if [[ $ACCOUNTING == none ]]; then
    acct="AccountingStorageType=accounting_storage/none"
  else
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$SUBNET.1
AccountingStoragePort=$DBD_PORT
# For slurmdbd connections the munge socket comes from here, not AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/qpu,gres/gpu"
  fi

  cat >"$D/slurm.conf" <<EOF
# Generated by tests/slurm/cluster.sh -- do not edit, rewritten on 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$(ctl_host)($SUBNET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$D/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# The main scheduler stops at the first blocked job of a partition (e.g. one
# waiting for a qpu); backfill starts the jobs behind it, run it every second.
SchedulerParameters=bf_interval=1
JobAcctGatherType=jobacct_gather/linux
$acct
JobCompType=jobcomp/none
GresTypes=qpu,gpu
MailProg=/bin/true
$overrides
# Fast turnaround for tests: short kill grace, finished jobs leave squeue soon,
# a node that stops answering is DOWN (its jobs NODE_FAIL) soon: SlurmdTimeout
# plus the failed pings, each of which waits MessageTimeout (default 10 s).
KillWait=5
MinJobAge=5
InactiveLimit=0
Waittime=0
MessageTimeout=5
SlurmdTimeout=10
ReturnToService=2
FirstJobId=1
# LLN: each job goes to the least loaded node, so jobs spread over the cpu
# nodes however many CPUs each has (by default Slurm fills one node first).
${nodes_conf}PartitionName=cpu Nodes=$cpu_nodes Default=YES LLN=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$(gpu_node) MaxTime=INFINITE State=UP
PartitionName=quantum Nodes=$(gpu_node) MaxTime=INFINITE State=UP
EOF
  # A gpu GRES (an empty device file, there is no GPU) so gpu=N jobs are scheduled as
  # on a real GPU partition; Slurm sets CUDA_VISIBLE_DEVICES for them.
  printf 'NodeName=%s Name=qpu File=%s/dev/qpu[0-1]\nNodeName=%s Name=gpu File=%s/dev/gpu0\n' \
    "$(gpu_node)" "$D" "$(gpu_node)" "$D" >"$D/gres.conf"
  # 'required': an error from the plugin (unknown --qpu name) fails the job;
  # with 'optional' Slurm would ignore it.
  echo "required $D/lib/spank_qpu.so types=$QPU_TYPES" >"$D/plugstack.conf"

  if [[ $ACCOUNTING != none ]]; then
    # slurmdbd refuses a config readable by others.
    (
      umask 077
      cat >"$D/slurmdbd.conf" <<EOF
# Generated by tests/slurm/cluster.sh
DbdHost=localhost
DbdAddr=$SUBNET.1
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
EOF
    )
  fi

  # The SPANK stand-in, rebuilt when its source changes.
  local src=$HERE/spank_qpu/spank_qpu.c so=$D/lib/spank_qpu.so
  if [[ ! -f $so || $src -nt $so ]]; then
    # Build aside and rename: never rewrite a .so some process has mapped.
    gcc -Wall -Wextra -O2 -shared -fPIC -o "$so.new" "$src" 2>"$D/log/spank_qpu.build.log" ||
      die "building spank_qpu.so failed" "$D/log/spank_qpu.build.log"
    mv -f "$so.new" "$so"
  fi
  save_settings
}

# Convenience for plain sbatch without SLURM_CONF, while the cluster is up;
# never clobber a real one. 'down' removes it again: a Slurm client configured
# for a controller that does not answer makes every snakemake start wait ~10 s.
ETC_CONF=/etc/slurm/slurm.conf
link_etc_conf() {
  if [[ ! -e $ETC_CONF && ! -L $ETC_CONF ]] || [[ $(readlink "$ETC_CONF" 2>/dev/null) == "$SLURM_CONF" ]]; then
    mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" "$ETC_CONF"
  else
    log "note: $ETC_CONF exists and is not ours; export SLURM_CONF=$SLURM_CONF"
  fi
}
unlink_etc_conf() { [[ $(readlink "$ETC_CONF" 2>/dev/null) != "$SLURM_CONF" ]] || rm -f "$ETC_CONF"; }

# --------------------------------------------------------------- daemons ---
start_munged() {
  # munged insists on its files being owned by the user it runs as.
  install -d -o munge -g munge -m 0755 "$D/munge"
  if [[ ! -s $D/munge/munge.key ]]; then
    (umask 077 && dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none)
  fi
  chown munge:munge "$D/munge/munge.key"
  chmod 0400 "$D/munge/munge.key"
  start munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --key-file="$D/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed"
  wait_until munged "its socket" sh -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

sql() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot -e "$1"; }

start_mariadbd() {
  need_port "$DB_PORT" MariaDB SLURM_TEST_DB_PORT
  install -d -o mysql -g mysql -m 0755 "$D/mariadb"
  if [[ ! -d $D/mariadb/data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$D/mariadb/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install-db.log" 2>&1 ||
      die "mariadb-install-db failed" "$D/log/mariadb-install-db.log"
  fi
  start mariadbd mariadbd --no-defaults --user=mysql --datadir="$D/mariadb/data" \
    --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
    --pid-file="$D/mariadb/mariadbd.pid" --log-error="$D/mariadb/mariadbd.log" \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
  wait_until mariadbd "connections" mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping
  sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
       CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmtest';
       GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
    die "could not create the slurm database user" "$(logfile mariadbd)"
}

start_slurmdbd() {
  need_port "$DBD_PORT" slurmdbd SLURM_TEST_DBD_PORT
  start slurmdbd slurmdbd -D
  wait_until slurmdbd "sacctmgr to answer" timeout 10 sacctmgr -n show cluster
  # Register cluster/account/user before slurmctld first talks to slurmdbd.
  local sm=(timeout 20 sacctmgr -i)
  if [[ -z $(sacctmgr -n -P show cluster "$CLUSTER" format=cluster) ]]; then
    "${sm[@]}" add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed" "$(logfile slurmdbd)"
  fi
  if [[ -z $(sacctmgr -n -P show account "$ACCOUNT" format=account) ]]; then
    "${sm[@]}" add account "$ACCOUNT" Cluster="$CLUSTER" Description=tests Organization=tests >/dev/null ||
      die "sacctmgr add account failed" "$(logfile slurmdbd)"
  fi
  if [[ -z $(sacctmgr -n -P show assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user) ]]; then
    "${sm[@]}" add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null ||
      die "sacctmgr add user failed" "$(logfile slurmdbd)"
    "${sm[@]}" modify user root set DefaultAccount="$ACCOUNT" >/dev/null || true
  fi
}

# Job ids normally continue from the saved state, but after a crash that state
# can be stale; never hand out an id that slurmdbd already has a record of.
# Left alone while a slurmd runs: a changed slurm.conf makes slurmctld log a
# config-hash mismatch for the node.
set_first_job_id() {
  local next=1 n q="SELECT COALESCE(MAX(id_job), 0) + 1 FROM slurm_acct_db.${CLUSTER}_job_table"
  for n in $(node_names); do ! live_pid "slurmd.$n" >/dev/null || return 0; done
  if live_pid mariadbd >/dev/null; then
    next=$(mariadb --no-defaults --socket="$DB_SOCKET" -uroot -N -e "$q" 2>/dev/null) || next=1
  fi
  sed -i "s/^FirstJobId=.*/FirstJobId=$next/" "$SLURM_CONF"
}

ctld_up() { timeout 10 scontrol ping | grep -q 'is UP'; }

# slurmctld runs on the host's network (the bridge address), under its own
# hostname: it refuses to start on a host that is not the configured one.
start_slurmctld() {
  need_port "$CTLD_PORT" slurmctld SLURM_TEST_CTLD_PORT
  set_first_job_id
  # -i: don't refuse to start over a state file from an unclean stop.
  # shellcheck disable=SC2016 # $1 is the inner shell's
  start slurmctld unshare --uts sh -c 'hostname "$1" && exec slurmctld -D -i' sh "$(ctl_host)"
  wait_until slurmctld "scontrol ping" ctld_up
}

# Every node registered and schedulable. After a slurmctld restart a node shows
# its saved state (idle/mixed) for ~5 s before its slurmd re-registers, and
# jobs sit in ReqNodeNotAvail until then; so ask the scheduler itself, per
# node (this submits nothing, but uses a job id each).
nodes_ready() {
  local n state
  for n in $(node_names); do
    live_pid "slurmd.$n" >/dev/null || die "slurmd on $n exited" "$D/log/slurmd.$n.out"
    state=$(timeout 10 sinfo -h -N -n "$n" -o %T | head -n 1)
    if [[ $state == *drain* ]]; then
      die "node $n is $state: $(sinfo -h -N -n "$n" -o %E | head -n 1)" "$(logfile "slurmd.$n")"
    fi
    timeout 10 sbatch --test-only -o /dev/null -p "$(node_partition "$n")" -w "$n" --wrap true || return 1
  done
}

# A node's slurmd: in the node's network namespace, under the node's hostname
# (its jobs inherit both). nsenter, not 'ip netns exec': that one remounts /sys
# for the namespace, which hides /sys/fs/cgroup from slurmd. In its own mount
# namespace the node's /etc/slurm is this cluster's, as on a real node: Slurm
# commands in its jobs then find the cluster without SLURM_CONF (the slurm
# plugin's job step drops SLURM_* variables before it calls srun).
start_slurmd() {
  local n=$1
  mkdir -p "$D/spool/$n" "$D/etc" /etc/slurm
  for f in slurm.conf gres.conf plugstack.conf; do ln -sfn "$D/$f" "$D/etc/$f"; done
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
  start "slurmd.$n" nsenter --net="/run/netns/$n" unshare --uts --mount sh -c \
    'hostname "$1" && mount --bind "$2" /etc/slurm && exec slurmd -D' sh "$n" "$D/etc"
}

# --------------------------------------------------------------- actions ---
status() {
  local ok=0 d pid out bad
  for d in $(daemons); do
    if pid=$(live_pid "$d"); then
      echo "$d: running (pid $pid)"
    else
      echo "$d: NOT running"
      ok=1
    fi
  done
  if ! live_pid slurmctld >/dev/null; then
    ok=1 # (sinfo would wait for it in vain)
  elif out=$(timeout 10 sinfo -h -N -o '%N %P %T' 2>&1); then
    echo "nodes: $(echo "$out" | tr '\n' ';' | sed 's/;$//')"
    # down, drained, failing or not responding (a '*' after the state)
    bad=$(echo "$out" | awk '$3 ~ /down|drain|fail|unk|\*/ { print $1 }' | sort -u | paste -sd,)
    if [[ -n $bad ]]; then
      echo "nodes not usable: $bad"
      ok=1
    fi
  else
    echo "sinfo: not answering: $(echo "$out" | head -n 1)"
    ok=1
  fi
  echo "cluster: $CLUSTER, $NODES node(s), accounting: $ACCOUNTING; export SLURM_CONF=$SLURM_CONF"
  return $ok
}

any_running() {
  local f
  for f in "$D"/pids/*.pid; do
    [[ -e $f ]] || continue
    f=${f##*/}
    ! live_pid "${f%.pid}" >/dev/null || return 0
  done
  return 1
}

up() {
  local t0=$SECONDS d want_nodes=$1
  [[ $EUID -eq 0 ]] || die "must run as root"
  ! live_pid slurmd >/dev/null ||
    die "a cluster started by an older cluster.sh (one node, no namespaces) runs in $D; run '$0 down' first"
  if any_running; then
    # Never rewrite the config under running daemons; only fill in gaps.
    [[ ${SLURM_TEST_ACCOUNTING:-$ACCOUNTING} == "$ACCOUNTING" ]] ||
      die "cluster is running with accounting=$ACCOUNTING; run '$0 down' before switching"
    [[ -z $want_nodes || $want_nodes == "$NODES" ]] ||
      die "cluster is running with $NODES node(s); run '$0 down' before asking for $want_nodes"
    if status >/dev/null 2>&1; then
      status
      return 0
    fi
    log "partially up; starting the rest"
  else
    # A fresh start that fails or is interrupted takes down what it started.
    trap 'log "up did not finish; stopping what it started"; down >/dev/null 2>&1 || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    settings_from_env # a stopped cluster is rebuilt as asked now
    NODES=${want_nodes:-$NODES}
    [[ $NODES =~ ^[1-9][0-9]?$ ]] || die "--nodes must be a number from 1 to 99, not '$NODES'"
    [[ $ACCOUNTING == none || $ACCOUNTING == slurmdbd ]] ||
      die "SLURM_TEST_ACCOUNTING must be 'slurmdbd' or 'none', not '$ACCOUNTING'"
    mkdir -p "$D/log"
    install_packages
    write_config
  fi
  net_up
  link_etc_conf
  for d in $(daemons); do
    live_pid "$d" >/dev/null && continue
    case $d in
      slurmd.*) start_slurmd "${d#slurmd.}" ;;
      *) "start_$d" ;;
    esac
  done
  wait_until slurmctld "every node to be usable" nodes_ready
  trap - EXIT INT TERM
  status
  log "cluster up in $((SECONDS - t0))s"
}

down() {
  local i n
  if live_pid slurmctld >/dev/null && ctld_up 2>/dev/null; then
    # Cancel everything first so no job outlives its slurmd.
    squeue -h -o %A | xargs -r scancel 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  # shellcheck disable=SC2046
  stop slurmctld slurmd $(node_names | sed 's/^/slurmd./') # (slurmd: an older cluster.sh's one node)
  # Job steps (slurmstepd) outlive their slurmd: stop what is left in each node.
  net_down
  # slurmdbd still writes to MariaDB while it shuts down.
  stop slurmdbd
  stop mariadbd munged
  unlink_etc_conf
  if [[ ${1:-} == --purge ]]; then
    rm -rf "$D"
    log "purged $D"
  fi
}

restart_ctld() {
  stop slurmctld
  start_slurmctld
  wait_until slurmctld "every node to be usable" nodes_ready
  log "slurmctld restarted (pid $(live_pid slurmctld))"
}

need_node() { node_addr "${1:-}" >/dev/null || die "no node '${1:-}'; nodes: $(node_names | paste -sd' ')"; }

# kill-slurmd NODE: its slurmd dies (SIGKILL); its jobs' steps run on.
kill_slurmd() {
  local pid
  need_node "$1"
  pid=$(live_pid "slurmd.$1") || die "slurmd on $1 is not running"
  kill -KILL "$pid"
  while [[ -d /proc/$pid ]]; do sleep 0.1; done
  log "killed slurmd on $1 (pid $pid); 'up' starts it again"
}

# kill-node NODE: the node is gone: everything on it is killed and its link
# goes down, so nothing on it answers any more. 'up' brings it back.
kill_node() {
  local pids
  need_node "$1"
  ip link set "$1" down
  pids=$(ns_pids "$1")
  # shellcheck disable=SC2086
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
  while [[ -n $(ns_pids "$1") ]]; do sleep 0.1; done
  log "node $1 is down ($(echo "$pids" | wc -w) process(es) killed); 'up' starts it again"
}

case ${1:-} in
  up)
    nodes=""
    case ${2:-} in
      "") ;;
      --nodes) nodes=${3:-} ;;
      --nodes=*) nodes=${2#--nodes=} ;;
      *) die "usage: $0 up [--nodes N]" ;;
    esac
    [[ -n $nodes || $# -le 2 ]] || die "usage: $0 up [--nodes N]"
    [[ -z $nodes ]] || [[ $nodes =~ ^[1-9][0-9]?$ ]] || die "--nodes must be a number from 1 to 99, not '$nodes'"
    up "$nodes"
    ;;
  down) down "${2:-}" ;;
  status) status ;;
  restart-ctld) restart_ctld ;;
  kill-slurmd) kill_slurmd "${2:-}" ;;
  kill-node) kill_node "${2:-}" ;;
  *)
    echo "usage: $0 up [--nodes N]|down [--purge]|status|restart-ctld|kill-slurmd NODE|kill-node NODE" >&2
    exit 2
    ;;
esac
