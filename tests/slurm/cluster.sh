#!/usr/bin/env bash
# Bring up / tear down a real single-node Slurm cluster for tests.
#
#   tests/slurm/cluster.sh up|down [--purge]|status|restart-ctld
#
# Everything (config, state, logs, pid files, munge key, MariaDB data) lives in
# ${SLURM_TEST_DIR:-/tmp/snakemake-quantum-slurm}. Daemons are started in the
# background by this script and stopped by the pids it recorded; nothing is
# ever killed by name. See README.md next to this file.
set -euo pipefail

D=${SLURM_TEST_DIR:-/tmp/snakemake-quantum-slurm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCOUNTING=${SLURM_TEST_ACCOUNTING:-slurmdbd} # slurmdbd | none
TIMEOUT=${SLURM_TEST_TIMEOUT:-90}             # seconds to wait for each daemon
DB_PORT=${SLURM_TEST_DB_PORT:-43306}          # MariaDB (TCP, 127.0.0.1 only)
CLUSTER=quantumtest
ACCOUNT=quantum
QPU_TYPES=${SLURM_TEST_QPU_TYPES:-aer_sim:qiskit-aer,sim2:vqpu}
NODE=$(hostname -s)
export SLURM_CONF=$D/slurm.conf
MUNGE_SOCKET=$D/munge/munge.socket
DB_SOCKET=$D/mariadb/mariadbd.sock
PKGS=(slurm-wlm munge slurmdbd mariadb-server libslurm-dev gcc)

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

# Daemons expected in the given accounting mode, in start order.
daemons() {
  if [[ $1 == none ]]; then echo munged slurmctld slurmd; else echo munged mariadbd slurmdbd slurmctld slurmd; fi
}

pidfile() { echo "$D/pids/$1.pid"; }

# Print the pid of daemon $1 if it is alive (and really is that program:
# guards against pid reuse after a reboot or a crash).
live_pid() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$1" ]] || return 1
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
# process-group leader, so $! is the daemon's own pid.
start() {
  local name=$1
  shift
  setsid "$@" >>"$D/log/$name.out" 2>&1 </dev/null 3>&- &
  echo $! >"$(pidfile "$name")"
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

need_port() { port_free "$1" || die "port $1 (for $2) is already in use on 127.0.0.1"; }

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

# kill_tree PID: SIGKILL PID and all its descendants (children first).
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -KILL "$1" 2>/dev/null || true
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

# ---------------------------------------------------------------- config ---
write_config() {
  local cpus mem real_cpus overrides=""
  real_cpus=$(nproc)
  cpus=${SLURM_TEST_CPUS:-$real_cpus}
  # slurmd would drain a node that claims more CPUs than it has, unless told
  # to report the configured values instead.
  ((cpus <= real_cpus)) || overrides="SlurmdParameters=config_overrides"
  # RealMemory must not exceed what slurmd detects; use 3/4 of MemAvailable.
  mem=$(awk '/^MemAvailable:/ { print int($2 / 1024 * 3 / 4) }' /proc/meminfo)

  mkdir -p "$D"/{pids,log,run,state,spool,dev,lib}
  : >"$D/dev/qpu0"
  : >"$D/dev/qpu1"
  : >"$D/dev/gpu0"

  local acct
  if [[ $ACCOUNTING == none ]]; then
    acct="AccountingStorageType=accounting_storage/none"
  else
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
# For slurmdbd connections the munge socket comes from here, not AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/qpu,gres/gpu"
  fi

  cat >"$D/slurm.conf" <<EOF
# Generated by tests/slurm/cluster.sh -- do not edit, rewritten on 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
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
# Fast turnaround for tests: short kill grace, finished jobs leave squeue soon.
KillWait=5
MinJobAge=5
InactiveLimit=0
Waittime=0
SlurmdTimeout=30
ReturnToService=2
FirstJobId=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=qpu:2,gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
PartitionName=quantum Nodes=$NODE MaxTime=INFINITE State=UP
EOF
  # A gpu GRES (an empty device file, there is no GPU) so gpu=N jobs are scheduled as
  # on a real GPU partition; Slurm sets CUDA_VISIBLE_DEVICES for them.
  printf 'Name=qpu File=%s/dev/qpu[0-1]\nName=gpu File=%s/dev/gpu0\n' "$D" "$D" >"$D/gres.conf"
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
DbdAddr=127.0.0.1
DbdPort=6819
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

  # Convenience for plain sbatch without SLURM_CONF; never clobber a real one.
  local etc=/etc/slurm/slurm.conf
  if [[ ! -e $etc && ! -L $etc ]] || [[ $(readlink "$etc" 2>/dev/null) == "$D/slurm.conf" ]]; then
    mkdir -p /etc/slurm && ln -sfn "$D/slurm.conf" "$etc"
  else
    log "note: $etc exists and is not ours; export SLURM_CONF=$D/slurm.conf"
  fi
  echo "$ACCOUNTING" >"$D/accounting"
}

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
  need_port "$DB_PORT" "MariaDB; set SLURM_TEST_DB_PORT"
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
  need_port 6819 slurmdbd
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
# Left alone while slurmd runs: a changed slurm.conf makes slurmctld log a
# config-hash mismatch for the node.
set_first_job_id() {
  local next=1 q="SELECT COALESCE(MAX(id_job), 0) + 1 FROM slurm_acct_db.${CLUSTER}_job_table"
  ! live_pid slurmd >/dev/null || return 0
  if live_pid mariadbd >/dev/null; then
    next=$(mariadb --no-defaults --socket="$DB_SOCKET" -uroot -N -e "$q" 2>/dev/null) || next=1
  fi
  sed -i "s/^FirstJobId=.*/FirstJobId=$next/" "$SLURM_CONF"
}

ctld_up() { timeout 10 scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
  need_port 6817 slurmctld
  set_first_job_id
  # -i: don't refuse to start over a state file from an unclean stop.
  start slurmctld slurmctld -D -i
  wait_until slurmctld "scontrol ping" ctld_up
}

node_ready() {
  local state
  state=$(timeout 10 sinfo -h -N -n "$NODE" -o %T | head -n 1)
  if [[ $state == *drain* ]]; then
    die "node $NODE is $state: $(sinfo -h -N -n "$NODE" -o %E | head -n 1)" "$(logfile slurmd)"
  fi
  # After a slurmctld restart the node shows its saved state (idle/mixed)
  # for ~5 s before slurmd re-registers, and jobs sit in ReqNodeNotAvail until
  # then; so ask the scheduler itself (this submits nothing, but uses a job id).
  timeout 10 sbatch --test-only -o /dev/null --wrap true
}

start_slurmd() {
  need_port 6818 slurmd
  start slurmd slurmd -D
  wait_until slurmd "node $NODE to be usable in sinfo" node_ready
}

# --------------------------------------------------------------- actions ---
status() {
  local mode ok=0 d pid out
  mode=$(cat "$D/accounting" 2>/dev/null || echo "$ACCOUNTING")
  for d in $(daemons "$mode"); do
    if pid=$(live_pid "$d"); then
      echo "$d: running (pid $pid)"
    else
      echo "$d: NOT running"
      ok=1
    fi
  done
  if out=$(timeout 10 sinfo -h -o '%P %a %D %T' 2>&1); then
    echo "sinfo: ok ($(echo "$out" | tr '\n' ';' | sed 's/;$//'))"
  else
    echo "sinfo: not answering: $(echo "$out" | head -n 1)"
    ok=1
  fi
  echo "accounting: $mode; export SLURM_CONF=$SLURM_CONF"
  return $ok
}

up() {
  local t0=$SECONDS d running=()
  [[ $ACCOUNTING == none || $ACCOUNTING == slurmdbd ]] ||
    die "SLURM_TEST_ACCOUNTING must be 'slurmdbd' or 'none', not '$ACCOUNTING'"
  [[ $EUID -eq 0 ]] || die "must run as root"
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    if live_pid "$d" >/dev/null; then running+=("$d"); fi
  done
  if ((${#running[@]})); then
    # Never rewrite the config under running daemons; only fill in gaps.
    local mode
    mode=$(cat "$D/accounting" 2>/dev/null || echo slurmdbd)
    [[ $mode == "$ACCOUNTING" ]] ||
      die "cluster is running with accounting=$mode; run '$0 down' before switching to $ACCOUNTING"
    if status >/dev/null 2>&1; then
      status
      return 0
    fi
    log "partially up (${running[*]}); starting the rest"
  else
    mkdir -p "$D/log"
    install_packages
    write_config
  fi
  for d in $(daemons "$ACCOUNTING"); do
    live_pid "$d" >/dev/null || "start_$d"
  done
  wait_until slurmd "node $NODE to be usable in sinfo" node_ready
  status
  log "cluster up in $((SECONDS - t0))s"
}

down() {
  local pid i
  if ctld_up 2>/dev/null; then
    # Cancel everything first so no job outlives its slurmd.
    squeue -h -o %A | xargs -r scancel 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  stop slurmd slurmctld
  # Job steps (slurmstepd) are children of slurmd that outlive it; reap the
  # ones that belong to this cluster (they inherit our SLURM_CONF).
  { grep -lx slurmstepd /proc/[0-9]*/comm 2>/dev/null || true; } | cut -d/ -f3 | while read -r pid; do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF"; then
      kill_tree "$pid"
    fi
  done
  # slurmdbd still writes to MariaDB while it shuts down.
  stop slurmdbd
  stop mariadbd munged
  if [[ ${1:-} == --purge ]]; then
    [[ $(readlink /etc/slurm/slurm.conf 2>/dev/null) != "$D/slurm.conf" ]] || rm -f /etc/slurm/slurm.conf
    rm -rf "$D"
    log "purged $D"
  fi
}

restart_ctld() {
  stop slurmctld
  start_slurmctld
  wait_until slurmd "node $NODE to be usable in sinfo" node_ready
  log "slurmctld restarted (pid $(live_pid slurmctld))"
}

case ${1:-} in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  restart-ctld) restart_ctld ;;
  *)
    echo "usage: $0 up|down [--purge]|status|restart-ctld" >&2
    exit 2
    ;;
esac
