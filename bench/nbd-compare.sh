#!/usr/bin/env bash
# nbd-compare.sh: the same backing file served by `dmactors serve` (one file disk, one linear device),
# qemu-nbd (Unix socket: qemu-nbd 7.2 does not set TCP_NODELAY, so its TCP numbers would measure Nagle)
# and `nbdkit file` (TCP and Unix socket), each driven by the same fio (ioengine=nbd) and nbdcopy workloads.
# All servers run at once on the same file (each in the page cache, flush = fdatasync), fully written by default
# (every block holds data, so writes overwrite allocated blocks; --sparse serves a file of holes instead); the runs are
# interleaved (every workload on every server, then again, with the order rotated each round) so drift of a
# shared machine cancels out. Prints medians over the runs and the ratio of the subject (dmactors, or the
# first server that started) to each peer, marking every ratio below 1.0. Progress goes to stderr, the table to stdout.
#
# Needs: fio (with the nbd engine), qemu-utils, nbdkit, libnbd-bin (nbdcopy, nbdinfo), jq, ss, dotnet.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/nbd-compare.sh [--quick] [--runs N] [--runtime S] [--size-mib N] [--dir DIR] [--keep]
                            [--servers "dmactors qemu nbdkit"] [--transports "tcp unix"] [--qemu-tcp]
                            [--workloads "randread-4k-qd1 ..."] [--dmactors-cmd "CMD"] [--sparse] [--tls]
  --quick          3 runs of 2 s on a 256 MiB file (a few minutes in all)
  --runs N         runs per workload and server (default 3; the median is reported)
  --runtime S      seconds per fio run (default 5)
  --size-mib N     size of the backing file (default 1024)
  --dir DIR        where the work directory goes (default $TMPDIR or /tmp); --keep leaves it behind
  --qemu-tcp       also run qemu-nbd over TCP (no TCP_NODELAY in 7.2: expect poor QD1 latency)
  --sparse         serve a sparse backing file (all holes) instead of a fully written one
  --tls            TLS required on every transport (certificates made with openssl); dmactors and nbdkit
                   only (qemu-nbd is left out), clients use nbds:// URIs
  workloads        randread/randwrite 4k at QD1 and QD32, seqread/seqwrite 1M at QD4, randwrite-4k-fsync (a
                   flush after each write, QD1), randwrite-4k-qd32-flush16 (a flush every 16 writes, QD32),
                   randread-4k-4x8 / randwrite-4k-4x8 (4 connections at QD8 each on the one export),
                   nbdcopy-read / nbdcopy-write (4 connections)
  --dmactors-cmd   how to run dmactors (default: dotnet <repo>/Host/bin/Release/net10.0/dmactors.dll,
                   built with `dotnet build Host -c Release` if missing)
EOF
}

RUNS=3 RUNTIME=5 SIZE_MIB=1024 DIR="${TMPDIR:-/tmp}" KEEP=0 QEMU_TCP=0 SPARSE=0 TLS=0
SERVERS="dmactors qemu nbdkit" TRANSPORTS="tcp unix" DMACTORS_CMD=""
ALL_WORKLOADS="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1 randwrite-4k-qd32 seqread-1m-qd4 seqwrite-1m-qd4 randwrite-4k-fsync randwrite-4k-qd32-flush16 randread-4k-4x8 randwrite-4k-4x8 nbdcopy-read nbdcopy-write"
WORKLOADS="$ALL_WORKLOADS"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) RUNS=3 RUNTIME=2 SIZE_MIB=256 ;;
    --runs) RUNS="$2"; shift ;;
    --runtime) RUNTIME="$2"; shift ;;
    --size-mib) SIZE_MIB="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    --keep) KEEP=1 ;;
    --servers) SERVERS="$2"; shift ;;
    --transports) TRANSPORTS="$2"; shift ;;
    --workloads) WORKLOADS="$2"; shift ;;
    --qemu-tcp) QEMU_TCP=1 ;;
    --sparse) SPARSE=1 ;;
    --tls) TLS=1 ;;
    --dmactors-cmd) DMACTORS_CMD="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "nbd-compare: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for n in RUNS RUNTIME SIZE_MIB; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { echo "nbd-compare: --${n,,} must be a positive whole number, got '${!n}'" >&2; exit 2; }
done
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || { echo "nbd-compare: unknown workload '$w' (known: $ALL_WORKLOADS)" >&2; exit 2; }
done
for tool in fio qemu-nbd nbdkit nbdcopy nbdinfo jq ss timeout; do
  command -v "$tool" >/dev/null || { echo "nbd-compare: $tool not found (Debian: fio qemu-utils nbdkit libnbd-bin jq iproute2)" >&2; exit 2; }
done

if [[ $TLS == 1 ]]; then
  command -v openssl >/dev/null || { echo "nbd-compare: --tls needs openssl" >&2; exit 2; }
  SERVERS="$(echo " $SERVERS " | sed 's/ qemu / /' | xargs)"
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "$DIR/nbd-compare.XXXXXX")"
DISK="$WORK/disk.img" SRC="$WORK/src.img" RESULTS="$WORK/results.tsv"
declare -A URI=() PID=()
: >"$RESULTS"

log() { echo "[$(date -u +%T)] $*" >&2; }

# With --tls: a CA, a server certificate for 127.0.0.1 / localhost (nbdkit's directory layout) and a client
# directory with the CA; URIs become nbds:// and nbds+unix:// naming the client directory.
make_certs() {
  local t="$WORK/tls"
  mkdir -p "$t/server" "$t/client"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca-key.pem" -out "$t/server/ca-cert.pem" -days 2 -subj /CN=bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$t/server/server-key.pem" -out "$t/server.csr" -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf"
  openssl x509 -req -in "$t/server.csr" -CA "$t/server/ca-cert.pem" -CAkey "$t/ca-key.pem" -CAcreateserial \
    -out "$t/server/server-cert.pem" -days 2 -extfile "$t/ext.cnf" 2>/dev/null
  cp "$t/server/ca-cert.pem" "$t/client/"
  mkdir -p "$t/home/.pki" && ln -s "$t/client" "$t/home/.pki/libnbd"
  CLIENT=(env "HOME=$t/home")
}
# nbd://... -> nbds://... (and nbd+unix -> nbds+unix) when --tls is on. fio refuses a tls-certificates= in a URI,
# so the clients find the CA where libnbd looks by default ($HOME/.pki/libnbd): CLIENT runs them with that HOME.
tls_uri() {
  local u=$1
  [[ $TLS == 1 ]] && u="nbds${u#nbd}"
  echo "$u"
}
CLIENT=()

# Stop every server we started (TERM, then KILL after 10 s), and remove the work directory.
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 20); do
    local alive=0
    for p in "${PID[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.5
  done
  for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback TCP port nobody listens on (random, checked against ss).
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    if ! ss -Htln "sport = :$port" | grep -q .; then echo "$port"; return; fi
  done
  echo "nbd-compare: no free port found" >&2; return 1
}

# Waits until URI answers nbdinfo, or the server process exits, or 60 s pass.
wait_ready() {
  local key=$1 uri=$2 pid=$3
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { log "$key: server exited (see $WORK/$key.log)"; return 1; }
    "${CLIENT[@]}" timeout 5 nbdinfo --size "$uri" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "$key: not answering after 60 s"; return 1
}

started() { # key uri pid
  local uri; uri=$(tls_uri "$2")
  if wait_ready "$1" "$uri" "$3"; then URI[$1]=$uri; PID[$1]=$3; log "$1: $uri"; else kill "$3" 2>/dev/null || true; fi
}

start_nbdkit() {
  local sock="$WORK/nbdkit.sock" port tls=()
  [[ $TLS == 1 ]] && tls=(--tls=require "--tls-certificates=$WORK/tls/server")
  if [[ " $TRANSPORTS " == *" unix "* ]]; then
    nbdkit -f --exit-with-parent "${tls[@]}" -U "$sock" file "$DISK" >"$WORK/nbdkit-unix.log" 2>&1 &
    started nbdkit/unix "nbd+unix:///?socket=$sock" $!
  fi
  if [[ " $TRANSPORTS " == *" tcp "* ]]; then
    port=$(free_port)
    nbdkit -f --exit-with-parent "${tls[@]}" -i 127.0.0.1 -p "$port" file "$DISK" >"$WORK/nbdkit-tcp.log" 2>&1 &
    started nbdkit/tcp "nbd://127.0.0.1:$port/" $!
  fi
}

# qemu-nbd: -t keeps serving after the first client leaves; locking off so both instances may share the file.
start_qemu() {
  local img="driver=raw,file.driver=file,file.filename=$DISK,file.locking=off" port
  local common=(-t --image-opts --cache=writeback --aio=threads -e 16 -x bench)
  if [[ " $TRANSPORTS " == *" unix "* ]]; then
    qemu-nbd "${common[@]}" -k "$WORK/qemu.sock" "$img" >"$WORK/qemu-unix.log" 2>&1 &
    started qemu/unix "nbd+unix:///bench?socket=$WORK/qemu.sock" $!
  fi
  if [[ $QEMU_TCP == 1 && " $TRANSPORTS " == *" tcp "* ]]; then
    port=$(free_port)
    qemu-nbd "${common[@]}" -b 127.0.0.1 -p "$port" "$img" >"$WORK/qemu-tcp.log" 2>&1 &
    started qemu/tcp "nbd://127.0.0.1:$port/bench" $!
  fi
}

# dmactors serve with a config in the host's format (akka.hocon's dmactors section, from the host branch:
# disks/devices lists, nbd.listen, nbd.unix-socket, control.port; the host prints "dmactors: ready" when up):
# one file disk on the backing file, one linear device over all of it, NBD on TCP and a Unix socket, control
# on a free port. Tested against main + the host branch merged; if `serve` is missing from the build, the
# dmactors column stays empty and the script says so.
start_dmactors() {
  local cmd=() port cport sectors=$(( SIZE_MIB * 2048 ))
  if [[ -n "$DMACTORS_CMD" ]]; then
    read -r -a cmd <<<"$DMACTORS_CMD"
  else
    local dll="$REPO/Host/bin/Release/net10.0/dmactors.dll"
    if [[ ! -f "$dll" ]]; then
      log "building dmactors (dotnet build Host -c Release)"
      (cd "$REPO" && timeout 600 dotnet build Host -c Release -v q -nologo >"$WORK/build.log" 2>&1) \
        || { log "dmactors: build failed (see $WORK/build.log)"; return 0; }
    fi
    cmd=(dotnet "$dll")
  fi
  port=$(free_port); cport=$(free_port)
  local listen='""' unix='""'
  [[ " $TRANSPORTS " == *" tcp "* ]] && listen="\"127.0.0.1:$port\""
  [[ " $TRANSPORTS " == *" unix "* ]] && unix="\"$WORK/dmactors.sock\""
  cat >"$WORK/dmactors.conf" <<EOF
dmactors {
  data-dir = "$WORK"
  disks = [ { name = bench0, path = "disk.img", create = off } ]
  devices = [ { name = bench, table = "0 $sectors linear bench0 0", barrier-mode = ordered } ]
  nbd { listen = $listen, unix-socket = $unix$( [[ $TLS == 1 ]] && echo ", tls = require, tls-certificates = \"$WORK/tls/server\", tls-unix-socket = on" ) }
  control { hostname = "127.0.0.1", port = $cport }
}
EOF
  "${cmd[@]}" serve --config "$WORK/dmactors.conf" >"$WORK/dmactors.log" 2>&1 &
  local pid=$!
  # The host prints "dmactors: ready" once disks, devices and NBD are up.
  for _ in $(seq 1 120); do
    grep -q "dmactors: ready" "$WORK/dmactors.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if grep -q "NBD server not available\|NBD disabled" "$WORK/dmactors.log" 2>/dev/null; then
    log "dmactors: this build has no NBD server yet (log: $(tail -n 3 "$WORK/dmactors.log" | tr '\n' ' ')); skipping"
    kill "$pid" 2>/dev/null || true; return 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log "dmactors: serve exited: $(tail -n 5 "$WORK/dmactors.log" | tr '\n' ' '); skipping"; return 0
  fi
  PID[dmactors]=$pid
  local u
  [[ " $TRANSPORTS " == *" tcp "* ]] && { u=$(tls_uri "nbd://127.0.0.1:$port/bench"); wait_ready dmactors/tcp "$u" "$pid" && URI[dmactors/tcp]="$u" && log "dmactors/tcp: $u"; }
  [[ " $TRANSPORTS " == *" unix "* ]] && { u=$(tls_uri "nbd+unix:///bench?socket=$WORK/dmactors.sock"); wait_ready dmactors/unix "$u" "$pid" && URI[dmactors/unix]="$u" && log "dmactors/unix: $u"; }
  return 0
}

# fio arguments per workload; the metric is IOPS for 4k, MB/s for 1M and nbdcopy.
fio_args() {
  case "$1" in
    randread-4k-qd1)    echo "--rw=randread --bs=4k --iodepth=1" ;;
    randread-4k-qd32)   echo "--rw=randread --bs=4k --iodepth=32" ;;
    randwrite-4k-qd1)   echo "--rw=randwrite --bs=4k --iodepth=1" ;;
    randwrite-4k-qd32)  echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    seqread-1m-qd4)     echo "--rw=read --bs=1M --iodepth=4" ;;
    seqwrite-1m-qd4)    echo "--rw=write --bs=1M --iodepth=4" ;;
    randwrite-4k-fsync) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    randwrite-4k-qd32-flush16) echo "--rw=randwrite --bs=4k --iodepth=32 --fsync=16" ;;
    # numjobs: each job is its own NBD connection; group_reporting sums them into jobs[0].
    randread-4k-4x8)    echo "--rw=randread --bs=4k --iodepth=8 --numjobs=4 --group_reporting" ;;
    randwrite-4k-4x8)   echo "--rw=randwrite --bs=4k --iodepth=8 --numjobs=4 --group_reporting" ;;
  esac
}
unit() { case "$1" in *1m*|nbdcopy*) echo "MB/s" ;; *) echo "IOPS" ;; esac; }

# Runs one workload against one server; appends "workload transport server run value p50us p99us" to RESULTS.
run_one() {
  local w=$1 key=$2 run=$3 uri=${URI[$2]} server=${2%/*} transport=${2#*/} value p50=- p99=- out="$WORK/fio.json"
  if ! kill -0 "${PID[$key]:-${PID[$server]}}" 2>/dev/null; then log "$key: server is gone"; value=ERR
  elif [[ $w == nbdcopy-* ]]; then
    local t0 t1
    t0=$(date +%s.%N)
    if [[ $w == nbdcopy-read ]]; then "${CLIENT[@]}" timeout -k 5 300 nbdcopy "$uri" null: 2>>"$WORK/nbdcopy.log" || value=ERR
    else "${CLIENT[@]}" timeout -k 5 300 nbdcopy "$SRC" "$uri" 2>>"$WORK/nbdcopy.log" || value=ERR; fi
    t1=$(date +%s.%N)
    [[ ${value:-} == ERR ]] || value=$(awk -v b=$(( SIZE_MIB << 20 )) -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / (z - a) / 1e6 }')
  else
    rm -f "$out"
    # shellcheck disable=SC2046
    if "${CLIENT[@]}" timeout -k 5 $(( RUNTIME + 60 )) fio --name="$w" --ioengine=nbd --uri="$uri" --size="${SIZE_MIB}M" \
         --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 $(fio_args "$w") \
         --output-format=json --output="$out" >>"$WORK/fio.log" 2>&1 \
       && [[ "$(jq '.jobs[0].error' "$out")" == 0 ]]; then
      local dir=read; [[ $w == *write* ]] && dir=write
      if [[ $(unit "$w") == IOPS ]]; then value=$(jq ".jobs[0].$dir.iops" "$out"); else value=$(jq ".jobs[0].$dir.bw_bytes / 1e6" "$out"); fi
      p50=$(jq ".jobs[0].$dir.clat_ns.percentile[\"50.000000\"] / 1000" "$out")
      p99=$(jq ".jobs[0].$dir.clat_ns.percentile[\"99.000000\"] / 1000" "$out")
    else value=ERR; fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$transport" "$server" "$run" "$value" "$p50" "$p99" >>"$RESULTS"
  log "run $run/$RUNS $(printf '%-26s %-6s %-9s' "$w" "$transport" "$server") $value $(unit "$w")${p50:+  p50 $p50 us}"
}

log "work directory $WORK; writing ${SIZE_MIB} MiB of random data"
dd if=/dev/urandom of="$SRC" bs=1M count="$SIZE_MIB" status=none
if [[ $SPARSE == 1 ]]; then
  truncate -s "${SIZE_MIB}M" "$DISK" # holes: the first write to each block allocates it
else
  # Every block written (no copy_file_range or reflink sharing, no holes), so writes overwrite allocated data.
  dd if="$SRC" of="$DISK" bs=1M conv=fsync status=none
fi
sync "$SRC" "$DISK"
[[ $TLS == 1 ]] && make_certs
BACKING="$( [[ $SPARSE == 1 ]] && echo sparse || echo "fully written" ) backing file ($(( $(stat -c %b "$DISK") * $(stat -c %B "$DISK") >> 20 )) MiB allocated)"
log "$BACKING"

for s in $SERVERS; do
  case "$s" in
    dmactors) start_dmactors ;;
    qemu) start_qemu ;;
    nbdkit) start_nbdkit ;;
    *) log "unknown server '$s' (dmactors, qemu, nbdkit)"; exit 2 ;;
  esac
done
KEYS=()
for s in $SERVERS; do for t in $TRANSPORTS; do [[ -n "${URI[$s/$t]:-}" ]] && KEYS+=("$s/$t"); done; done
[[ ${#KEYS[@]} -gt 0 ]] || { log "no server started"; exit 1; }
log "serving: ${KEYS[*]}; $RUNS runs x $RUNTIME s"

for run in $(seq 1 "$RUNS"); do
  for w in $WORKLOADS; do
    for i in "${!KEYS[@]}"; do
      run_one "$w" "${KEYS[$(( (i + run) % ${#KEYS[@]} ))]}" "$run"
    done
  done
done

# Medians per workload, transport and server; the subject is dmactors if it ran, else the first server that ran.
RAN=""
for s in $SERVERS; do cut -f3 "$RESULTS" | grep -qx "$s" && RAN="$RAN $s"; done
SUBJECT=$(echo $RAN | cut -d' ' -f1)
awk -F'\t' -v servers="$RAN" -v transports="$TRANSPORTS" -v workloads="$WORKLOADS" -v subject="$SUBJECT" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1 SUBSEP $2 SUBSEP $3
    if ($5 == "ERR") err[k]++; else { v[k] = v[k] " " $5; if ($6 != "-") { p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7 } } }
  END {
    ns = split(servers, S, " "); nt = split(transports, T, " "); nw = split(workloads, W, " ")
    printf "%-26s %-5s %-5s", "workload", "via", "unit"
    for (i = 1; i <= ns; i++) printf " %12s", S[i]
    for (i = 1; i <= ns; i++) if (S[i] != subject) printf " %10s", subject "/" S[i]
    printf "   %s\n", "p50/p99 us per server"
    for (w = 1; w <= nw; w++) for (t = 1; t <= nt; t++) {
      u = (W[w] ~ /1m|nbdcopy/) ? "MB/s" : "IOPS"
      line = sprintf("%-26s %-5s %-5s", W[w], T[t], u); any = 0; lat = ""
      for (i = 1; i <= ns; i++) {
        k = W[w] SUBSEP T[t] SUBSEP S[i]; m[i] = median(v[k])
        if (m[i] != "") any = 1
        line = line sprintf(" %12s", m[i] == "" ? (err[k] ? "ERR" : "-") : sprintf("%.1f", m[i]))
        if (p50[k] != "") lat = lat sprintf("  %s %.0f/%.0f", S[i], median(p50[k]), median(p99[k]))
      }
      if (!any) continue
      for (i = 1; i <= ns; i++) if (S[i] != subject) {
        for (j = 1; j <= ns; j++) if (S[j] == subject) sm = m[j]
        r = (sm != "" && m[i] != "" && m[i] > 0) ? sm / m[i] : ""
        if (r != "" && r < 1.0) below++
        line = line sprintf(" %10s", r == "" ? "-" : sprintf("%.2f%s", r, r < 1.0 ? "<" : " "))
      }
      print line "  " lat
    }
    if (ns > 1) printf "ratios marked < are below 1.0 (the subject is slower than that peer): %d\n", below + 0
  }' "$RESULTS"
echo "medians of $RUNS runs x ${RUNTIME}s, ${SIZE_MIB} MiB $BACKING$( [[ $TLS == 1 ]] && echo ", TLS required (nbds://)" ), $(nproc) cores; fio ioengine=nbd, 1 job (4x8: 4 jobs, one connection each); nbdcopy whole export to null: / from a file"
[[ " $SERVERS " == *" qemu "* && $QEMU_TCP == 0 ]] && echo "qemu-nbd over Unix socket only (7.2 lacks TCP_NODELAY; --qemu-tcp to include it)"
if [[ -z "${URI[dmactors/tcp]:-}${URI[dmactors/unix]:-}" && " $SERVERS " == *" dmactors "* ]]; then
  echo "dmactors did not serve (no NBD server in this build yet?): its column is empty"
fi
