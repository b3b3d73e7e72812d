#!/usr/bin/env bash
# A real Slurm cluster on one host for integration tests and CI: slurmctld plus two fake compute nodes n1 and n2
# (two slurmd processes, both reached at 127.0.0.1 on their own ports), one default partition `debug`. Needs root
# on a Debian machine; installs slurm-wlm (22.05 on Debian 12) and munge with apt-get when they are missing.
#
#   scripts/slurm.sh start    idempotent: prints "slurm: running" when sinfo answers and n1 and n2 are up (idle or
#                             running jobs); otherwise installs what is missing, writes /etc/slurm/slurm.conf
#                             (never over a config this script did not write), starts munged, slurmctld and both
#                             slurmds, and waits (ISOCLR_SLURM_START_TIMEOUT, default 60 s) until both are idle.
#                             Measured: 12 s from a machine without Slurm, 0.2 s when installed, 0.07 s running.
#   scripts/slurm.sh stop     cancels all jobs, scontrol shutdown, then TERM/KILL whatever daemon is left (bounded
#                             wait, about 2 s); munged is left running (harmless, start reuses it)
#   scripts/slurm.sh status   sinfo; exit 0 when both nodes are up
#
# Logs: /var/log/slurm/{slurmctld,slurmd-n1,slurmd-n2,jobcomp}.log (the "mpi/pmix_v4 ... can not load PMIx
# library" errors there are harmless). State: /var/spool/slurmctld, /var/spool/slurmd/<node>. Ports: slurmctld
# 6817, n1 17001, n2 17002, bound to 127.0.0.1 when the host name resolves to 127.0.0.1 (else to all addresses,
# see bind_params).
#
# What tests can rely on (each checked by hand with the commands below, on a 2-core VM):
#   * nodes n1 and n2 with CPUs=2 each (also on a 1-core host: SlurmdParameters=config_overrides), so two
#     `-c 2` jobs run at once, one per node:
#       sbatch -c2 --wrap 'sleep 30'; sbatch -c2 --wrap 'sleep 30'; squeue     # both R, on n1 and on n2
#   * multi-node batch jobs and srun inside them. Every task sees the host's real hostname (`hostname` prints
#     the machine's name on both nodes); the fake node is in SLURMD_NODENAME (n1/n2), SLURM_NODEID, SLURM_PROCID:
#       cd /tmp && sbatch --nodes=2 --ntasks-per-node=1 --wrap 'srun hostname'  # slurm-<id>.out: the host name twice
#       srun -N2 -n2 env | grep SLURM_PROCID                                    # SLURM_PROCID=0 and =1
#       srun -N2 -n2 bash -c 'echo $SLURM_PROCID $SLURMD_NODENAME'             # "0 n1" and "1 n2"
#       scontrol show hostnames $SLURM_JOB_NODELIST     # inside the job: n1 and n2 (names; the list is n[1-2])
#       scontrol show node n1 | grep -o 'NodeAddr=[^ ]*'                         # NodeAddr=127.0.0.1
#       sinfo -h -N -o '%N %o'                                                   # "n1 127.0.0.1", "n2 127.0.0.1"
#   * requeue (JobRequeue=1, so batch jobs are requeueable by default). `scontrol requeue $SLURM_JOB_ID` from
#     inside the job returns 0, then the running batch shell is killed at once (TERM, KILL after KillWait),
#     so lines after it usually do not run; the job is PENDING with Reason=BeginTime for cred_expire+1 s
#     (AuthInfo=cred_expire=10 here; default 120 s) and runs again 11-12 s after the first run started, with
#     SLURM_RESTART_COUNT=1 (unset in the first run); `scontrol show job` then says Restarts=1:
#       sbatch --requeue -o /tmp/rq.out --open-mode=append --wrap \
#         'echo run ${SLURM_RESTART_COUNT:-unset}; [ -z "$SLURM_RESTART_COUNT" ] && scontrol requeue $SLURM_JOB_ID; sleep 60'
#   * time limit and warning signal (OverTimeLimit=0, KillWait=5). slurmctld checks time limits only every 30 s
#     (PERIODIC_TIMEOUT, compiled in, not configurable) and sends the --signal as soon as a check finds the job
#     within warn-time + 30 s of its end. So with --time=1 --signal=B:USR2@40 the batch shell got SIGUSR2 4 s,
#     12 s and 24 s after start in three runs (anywhere in 0-30 s), and the job was killed (JobState=TIMEOUT)
#     64 s and 84 s after start (anywhere in 60-90 s). For a prompt, deterministic warning in a test, send it
#     by hand: `scancel --batch --signal=USR2 <id>` reached the batch shell in 0.06 s.
#       sbatch --time=1 --signal=B:USR2@40 -o /tmp/sig.out --wrap \
#         'trap "echo USR2 after \$SECONDS s" USR2; while :; do sleep 1; done'
#   * finished jobs stay in `scontrol show job` for 10 minutes (MinJobAge=600), also across stop/start:
#       scontrol show job <id> | grep -E 'JobState|ExitCode'        # e.g. COMPLETED 0:0, TIMEOUT 0:15
#   * a submitted job starts within a second on an idle node (0.12-0.76 s from sbatch to the first line of
#     the script; main scheduler on every event, no batch_sched_delay):
#       sbatch --wrap 'date +%s.%N'
#   * `scripts/slurm.sh stop && scripts/slurm.sh start` works (2 s + 0.2 s).
set -euo pipefail

conf=/etc/slurm/slurm.conf
marker='# Written by isoclr scripts/slurm.sh; it rewrites this file freely (remove this line to keep your edits).'
logdir=/var/log/slurm
nodes=(n1 n2)
node_port() { case $1 in n1) echo 17001 ;; n2) echo 17002 ;; esac; }
start_timeout=${ISOCLR_SLURM_START_TIMEOUT:-60}

say() { echo "slurm: $*"; }
die() { echo "slurm: $*" >&2; exit 1; }

# --- state probes -------------------------------------------------------------------------------------------

# State of one node as sinfo prints it (idle, alloc, mix, down*, ...), or nothing when slurmctld does not answer.
# sinfo is not asked while no slurmctld runs: it would retry the connection for about 10 s before it gives up.
node_state() {
  ctld_pid >/dev/null || return 0
  sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n1 || true
}

# A node is "up" when slurmctld has heard from its slurmd and it takes jobs (no '*' = not responding, no drain).
node_up() { [[ $(node_state "$1") =~ ^(idle|alloc|mix|comp)$ ]]; }
all_up() { local n; for n in "${nodes[@]}"; do node_up "$n" || return 1; done; }
all_idle() { local n; for n in "${nodes[@]}"; do [[ $(node_state "$n") == idle ]] || return 1; done; }

# The pid in a pid file when that process is alive.
live_pid() { local p; p=$(cat "$1" 2>/dev/null) && [[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"; }
ctld_pid() { live_pid /run/slurmctld.pid; }
slurmd_pid() { live_pid "/run/slurmd-$1.pid"; }

munge_works() { command -v munge >/dev/null && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

# --- setup steps --------------------------------------------------------------------------------------------

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  [[ $(id -u) == 0 ]] || die "installing slurm-wlm and munge needs root"
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine; refresh them only if the install fails.
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
    || die "apt-get could not install slurm-wlm and munge"
  # Under systemd the packages start their own daemons with the default config; ours replace them.
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now slurmctld slurmd >/dev/null 2>&1 || true
  fi
}

write_munge_key() {
  [[ -s /etc/munge/munge.key ]] && return
  say "writing /etc/munge/munge.key"
  install -d -o munge -g munge -m 0700 /etc/munge
  (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
}

# Slurm daemons listen on 0.0.0.0 unless CommunicationParameters=NoCtldInAddrAny,NoInAddrAny, which makes them
# and srun bind to the address the host name resolves to. Only when that is 127.0.0.1 does this keep everything
# working on loopback: with Debian's usual 127.0.1.1, srun listens on 127.0.1.1 while slurmstepd connects back
# to 127.0.0.1 (the source address the kernel picks on lo), and every srun step hangs in "IO setup failed". So
# then, as for a host name that resolves to a real address, the daemons listen on all addresses, and are still
# reached at 127.0.0.1.
host_addr() { getent ahostsv4 "$(uname -n)" 2>/dev/null | awk 'NR == 1 { print $1 }'; }
bind_params() {
  if [[ $(host_addr) == 127.0.0.1 ]]; then
    echo "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  else
    echo "# $(uname -n) does not resolve to 127.0.0.1: the daemons listen on all addresses"
  fi
}

# The whole config. Why each non-default setting is there:
#   SlurmUser=root, ProctrackType=linuxproc, TaskPlugin=task/none: no cgroups, works in containers and VMs.
#   SlurmdParameters=config_overrides: the nodes have the CPUs written here, whatever the host has, so two fake
#     2-CPU nodes also fit on a 1-core host (the jobs then overcommit the real cores, which tests accept).
#   JobRequeue=1: batch jobs are requeueable unless they say --no-requeue.
#   AuthInfo=cred_expire=10: a requeued job waits cred_expire seconds before it is eligible again (default 120).
#   KillWait=5, OverTimeLimit=0: jobs past their limit or cancelled end quickly.
#   MinJobAge=600: a finished job stays visible in `scontrol show job` for 10 minutes (no accounting database).
#   SchedulerParameters: the main scheduler runs on every submit/completion event (sched_min_interval 0,
#     no batch_sched_delay), so a job starts within about a second; sched_interval=2 because a requeued job
#     whose BeginTime has passed is started only by a periodic pass (default 60 s; it took 24 s before this).
#   ReturnToService=2: a node that was DOWN (e.g. slurmd restarted) becomes usable as soon as it registers.
#   MessageTimeout=10, SlurmdTimeout=300: loopback is fast; don't mark a node down while a test is slow.
write_conf() {
  local host addr=127.0.0.1; host=$(hostname -s)
  cat <<EOF
$marker
ClusterName=isoclr
SlurmctldHost=$host($addr)
SlurmctldPort=6817
$(bind_params)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$logdir/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
JobRequeue=1
KillWait=5
OverTimeLimit=0
MinJobAge=600
InactiveLimit=0
MessageTimeout=10
SlurmdTimeout=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,sched_min_interval=0,batch_sched_delay=0,bf_interval=5
NodeName=n1 NodeHostname=$host NodeAddr=$addr Port=$(node_port n1) CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=$addr Port=$(node_port n2) CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
}

# Writes the config when it is absent or ours. Returns 0 when the file changed (running daemons must restart).
install_conf() {
  if [[ -e $conf ]] && ! grep -qxF "$marker" "$conf"; then
    die "$conf exists and was not written by this script; move it away (or add the line '$marker' to let this script own it)"
  fi
  local new; new=$(write_conf)
  if [[ -e $conf ]] && [[ $(cat "$conf") == "$new" ]]; then
    return 1
  fi
  say "writing $conf"
  install -d /etc/slurm
  printf '%s\n' "$new" >"$conf.tmp" && mv "$conf.tmp" "$conf" || die "cannot write $conf"
}

make_dirs() {
  install -d -m 0755 "$logdir" /var/spool/slurmctld /var/spool/slurmd
  local n; for n in "${nodes[@]}"; do install -d -m 0755 "/var/spool/slurmd/$n"; done
  install -d -o munge -g munge -m 0755 /run/munge
}

start_munge() {
  munge_works && return
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  local i; for i in $(seq 50); do munge_works && return; sleep 0.1; done
  die "munged started but munge -n | unmunge fails"
}

start_daemons() {
  if ! ctld_pid >/dev/null; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start (see $logdir/slurmctld.log)"
  fi
  local n; for n in "${nodes[@]}"; do
    if ! slurmd_pid "$n" >/dev/null; then
      say "starting slurmd for $n (port $(node_port "$n"))"
      slurmd -N "$n" || die "slurmd -N $n did not start (see $logdir/slurmd-$n.log)"
    fi
  done
}

wait_idle() {
  local deadline=$((SECONDS + start_timeout))
  until all_idle; do
    if ((SECONDS >= deadline)); then
      sinfo -N >&2 || true
      tail -n 20 "$logdir/slurmctld.log" >&2 || true
      die "n1 and n2 are not idle after ${start_timeout}s (logs in $logdir)"
    fi
    # A node left DOWN/DRAIN by an earlier run (e.g. killed slurmd) is put back to work once it responds.
    local n; for n in "${nodes[@]}"; do
      if [[ $(node_state "$n") =~ ^(down|drain|drng|fail)$ ]]; then
        scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
      fi
    done
    sleep 0.5
  done
}

# --- commands -----------------------------------------------------------------------------------------------

cmd_start() {
  if command -v sinfo >/dev/null && [[ -r $conf ]] && grep -qxF "$marker" "$conf" \
     && [[ $(cat "$conf") == "$(write_conf)" ]] && all_up; then
    say "running"
    return
  fi
  [[ $(id -u) == 0 ]] || die "start needs root"
  install_packages
  write_munge_key
  if install_conf && { ctld_pid >/dev/null || slurmd_pid n1 >/dev/null || slurmd_pid n2 >/dev/null; }; then
    say "config changed: restarting the running daemons"
    cmd_stop
  fi
  make_dirs
  start_munge
  start_daemons
  wait_idle
  say "running: partition debug, nodes n1 n2 on 127.0.0.1 (logs in $logdir)"
}

# Jobs outlive slurmd (their slurmstepd keeps running), and one still running when the daemons come back, maybe
# with another config, can keep its node COMPLETING for minutes. So stop cancels every job and waits (at most
# 20 s; KillWait is 5 s) until none is left running.
cancel_jobs() {
  local ids i
  ids=$(squeue -h -o %i 2>/dev/null) || return 0
  [[ -n $ids ]] || return 0
  say "cancelling jobs: $(echo $ids)"
  # shellcheck disable=SC2086
  scancel $ids 2>/dev/null || true
  for i in $(seq 200); do
    [[ -z $(squeue -h -o %i 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  echo "slurm: jobs still there after 20 s: $(squeue -h -o '%i %T' | paste -sd' ')" >&2
}

cmd_stop() {
  # Read the pids first: the daemons remove their pid files early in their shutdown, seconds before they exit,
  # and a slurmctld started while the old one still saves state waits for it to go.
  local pids=() pid n i
  pid=$(ctld_pid) && pids+=("$pid")
  for n in "${nodes[@]}"; do pid=$(slurmd_pid "$n") && pids+=("$pid"); done
  if command -v scontrol >/dev/null && ctld_pid >/dev/null; then
    cancel_jobs
    # Stops slurmctld and tells every registered slurmd to exit too.
    scontrol shutdown >/dev/null 2>&1 || true
  fi
  # Whatever did not go with the shutdown request (e.g. a slurmd that never registered) gets TERM, then KILL.
  for i in $(seq 300); do
    local alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    if ((${#alive[@]} == 0)); then say "stopped"; return 0; fi
    if ((i == 150)); then kill -TERM "${alive[@]}" 2>/dev/null || true; fi
    if ((i == 250)); then kill -KILL "${alive[@]}" 2>/dev/null || true; fi
    sleep 0.1
  done
  die "Slurm daemons ${alive[*]} are still running after 30 s"
}

cmd_status() {
  command -v sinfo >/dev/null || die "Slurm is not installed"
  ctld_pid >/dev/null || die "slurmctld is not running"
  sinfo -N -o '%N %P %t %c %o' || true
  all_up
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
