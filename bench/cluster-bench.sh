#!/usr/bin/env bash
# cluster-bench.sh: the cluster path on loopback. Three `dmactors serve` nodes and a private PostgreSQL; one
# volume over a disk of its owner (local) and one over a disk of another node (remote, through the NBD data
# channel), both owned by n1. fio (ioengine=nbd) drives each through its owner (n1) and through a node that does
# not own it (n3, served through the data channel to n1). Runs are interleaved; medians and the ratios
# remote/local and non-owner/owner are printed. Last, the failover time: kill -9 of the owner of a volume whose
# disk is on a survivor, until the first answered read on the survivor.
#
# Needs: fio (nbd engine), qemu-utils (qemu-io), jq, PostgreSQL binaries (initdb, pg_ctl), dotnet.
set -euo pipefail

RUNS=3 RUNTIME=5 SIZE_MIB=256 DIR="${TMPDIR:-/tmp}" KEEP=0 DMACTORS_CMD=""
usage() {
  cat <<'EOF2'
usage: bench/cluster-bench.sh [--quick] [--runs N] [--runtime S] [--size-mib N] [--dir DIR] [--keep] [--dmactors-cmd CMD]
  --quick   2 runs of 2 s on 128 MiB volumes
EOF2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) RUNS=2 RUNTIME=2 SIZE_MIB=128 ;;
    --runs) RUNS="$2"; shift ;;
    --runtime) RUNTIME="$2"; shift ;;
    --size-mib) SIZE_MIB="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    --keep) KEEP=1 ;;
    --dmactors-cmd) DMACTORS_CMD="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cluster-bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for n in RUNS RUNTIME SIZE_MIB; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { echo "cluster-bench: --${n,,} must be a positive whole number" >&2; exit 2; }
done
for tool in fio qemu-io jq timeout; do
  command -v "$tool" >/dev/null || { echo "cluster-bench: $tool not found (Debian: fio qemu-utils jq)" >&2; exit 2; }
done
PGBIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[[ -x "$PGBIN/initdb" ]] || { echo "cluster-bench: PostgreSQL (initdb) not found (Debian: postgresql)" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "$DMACTORS_CMD" ]]; then
  DLL="$REPO/Host/bin/Release/net10.0/dmactors.dll"
  [[ -f "$DLL" ]] || dotnet build "$REPO/Host" -c Release -v q >&2
  DMACTORS_CMD="dotnet $DLL"
fi
log() { echo "cluster-bench: $*" >&2; }
WORK=$(mktemp -d "$DIR/cluster-bench.XXXXXX")
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [[ -d "$WORK/pgrun/data" ]] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pgrun/data" -m immediate stop >/dev/null 2>&1 || true
  [[ $KEEP == 1 ]] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port)
# PostgreSQL refuses to run as root: its directory (data, socket, log) belongs to the postgres user.
chmod 755 "$WORK"; mkdir "$WORK/pgrun"; chown postgres "$WORK/pgrun"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pgrun/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pgrun/data" -o "-p $PGPORT -k $WORK/pgrun -c listen_addresses=127.0.0.1" \
  -l "$WORK/pgrun/log" -w start >/dev/null
JOURNAL="Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres"

start_node() { # n seed-control-port
  local n=$1 seed=${2:-} size=$(( SIZE_MIB * 2 ))M
  mkdir -p "$WORK/n$n"
  cat >"$WORK/n$n.conf" <<EOC
dmactors {
  data-dir = "$WORK/n$n"
  disks = [ { name = disk0, path = "disk0.img", size = $size, create = on } ]
  devices = []
  nbd.listen = "127.0.0.1:0"
  control.port = 0
  journal.postgres = "$JOURNAL"
  cluster { node = n$n, secret = bench, stable-after = 2s, heartbeat-pause = 2s, seed-nodes = [${seed:+\"127.0.0.1:$seed\"}] }
}
akka.cluster.failure-detector.heartbeat-interval = 500ms
EOC
  $DMACTORS_CMD serve --config "$WORK/n$n.conf" >"$WORK/n$n.log" 2>&1 &
  PID[n$n]=$!
  for _ in $(seq 1 240); do
    grep -q '^dmactors: ready' "$WORK/n$n.log" && break
    kill -0 "${PID[n$n]}" 2>/dev/null || { log "n$n exited: $(tail -n 5 "$WORK/n$n.log")"; exit 1; }
    sleep 0.5
  done
  grep -q '^dmactors: ready' "$WORK/n$n.log" || { log "n$n did not start"; exit 1; }
}
control_port() { sed -n 's/^dmactors: control listening on .*:\([0-9]*\)\/user\/control$/\1/p' "$WORK/n$1.log"; }
nbd_port() { sed -n 's/^dmactors: NBD listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$WORK/n$1.log"; }
dmsetup() { local n=$1; shift; $DMACTORS_CMD dmsetup --control "127.0.0.1:$(control_port "$n")" "$@"; }

log "starting 3 nodes and PostgreSQL in $WORK"
start_node 1
start_node 2 "$(control_port 1)"
start_node 3 "$(control_port 1)"
SECTORS=$(( SIZE_MIB * 2048 ))
dmsetup 1 create local --node n1 --table "0 $SECTORS linear disk0@n1 0"
dmsetup 1 create remote --node n1 --table "0 $SECTORS linear disk0@n2 0"
RESULTS="$WORK/results.tsv"
fio_args() {
  case "$1" in
    randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    randread-4k-qd32)  echo "--rw=randread --bs=4k --iodepth=32" ;;
    seqwrite-1m-qd4)   echo "--rw=write --bs=1M --iodepth=4" ;;
    seqread-1m-qd4)    echo "--rw=read --bs=1M --iodepth=4" ;;
  esac
}
WORKLOADS="randwrite-4k-qd32 randread-4k-qd32 seqwrite-1m-qd4 seqread-1m-qd4"
PATHS="local@n1 remote@n1 local@n3 remote@n3"
for run in $(seq 1 "$RUNS"); do
  for w in $WORKLOADS; do
    for p in $PATHS; do
      vol=${p%@*} node=${p#*@}; node=${node#n}
      out="$WORK/fio.json"; rm -f "$out"
      # shellcheck disable=SC2046
      if timeout -k 5 $(( RUNTIME + 60 )) fio --name="$w" --ioengine=nbd --uri="nbd://127.0.0.1:$(nbd_port "$node")/$vol" \
           --size="${SIZE_MIB}M" --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 $(fio_args "$w") \
           --output-format=json --output="$out" >>"$WORK/fio.log" 2>&1 && [[ "$(jq '.jobs[0].error' "$out")" == 0 ]]; then
        dir=read; [[ $w == *write* ]] && dir=write
        if [[ $w == *4k* ]]; then v=$(jq ".jobs[0].$dir.iops" "$out"); else v=$(jq ".jobs[0].$dir.bw_bytes / 1e6" "$out"); fi
      else v=ERR; fi
      printf '%s\t%s\t%s\n' "$w" "$p" "$v" >>"$RESULTS"
      log "run $run/$RUNS $(printf '%-18s %-10s' "$w" "$p") $v"
    done
  done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "ERR"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() { awk -F'\t' -v w="$1" -v p="$2" '$1 == w && $2 == p && $3 != "ERR" { print $3 }' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "ERR" || b == "ERR" || b == 0) print "-"; else printf "%.2f", a / b }'; }
printf '%-18s %5s %12s %12s %12s %12s %14s %14s\n' workload unit local@n1 remote@n1 local@n3 remote@n3 remote/local non-owner/owner
for w in $WORKLOADS; do
  unit=IOPS; [[ $w == *1m* ]] && unit=MB/s
  l1=$(med "$w" local@n1) r1=$(med "$w" remote@n1) l3=$(med "$w" local@n3) r3=$(med "$w" remote@n3)
  printf '%-18s %5s %12.0f %12.0f %12.0f %12.0f %14s %14s\n' "$w" "$unit" "$l1" "$r1" "$l3" "$r3" "$(ratio "$r1" "$l1")" "$(ratio "$l3" "$l1")"
done

# Failover: a volume owned by n1 over n3's disk; kill -9 n1 and time until a survivor answers a read.
dmsetup 2 create failover --node n1 --table "0 2048 linear disk0@n3 0"
qemu-io -f raw -c "write -P 0x5a 0 64k" -c flush "nbd://127.0.0.1:$(nbd_port 2)/failover" >/dev/null
t0=$(date +%s.%N)
kill -9 "${PID[n1]}"
until out=$(timeout 5 qemu-io -f raw -c "read -P 0x5a 0 64k" "nbd://127.0.0.1:$(nbd_port 2)/failover" 2>&1) && [[ $out != *failed* && $out != *rror* ]]; do
  sleep 0.2
  awk -v a="$t0" -v z="$(date +%s.%N)" 'BEGIN { exit !(z - a > 180) }' && { log "no answer 180 s after the kill"; break; }
done
t1=$(date +%s.%N)
awk -v a="$t0" -v z="$t1" 'BEGIN { printf "failover: kill -9 of the owner to the first answered read on a survivor: %.1f s (stable-after 2s, heartbeat-pause 2s)\n", z - a }'
