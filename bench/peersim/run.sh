#!/usr/bin/env bash
# PeerSim's side of the cycle-driven benchmark (README, "Performance"): PeerSim 1.0.5's
# cycle-driven averaging (averaging.txt) at 10^5 and 10^6 nodes, 30 cycles, each run
# under /usr/bin/time -v (wall time and peak RSS), one JSON line per run on stdout.
#
#   bench/peersim/run.sh PEERSIM [NODES ...]        (default NODES: 100000 1000000)
#
# PEERSIM is PeerSim's jar (peersim-1.0.5.jar; jep-*.jar and djep-*.jar are looked for
# beside it), the folder of the release (peersim-1.0.5/ with those jars), or a source
# checkout of PeerSim 1.0.5 (a folder holding peersim/Simulator.java and
# example/aggregation/, plus jep-*.jar and djep-*.jar anywhere under it or under $JEP_DIR):
# a source checkout is compiled with javac into $PEERSIM_BUILD (default
# /tmp/peersim-build) first. PeerSim itself is not part of raysim.
#
# Alternate with `raysim bench --only cycle` (A B A B): the machine's load moves both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${1:?usage: run.sh PEERSIM [NODES ...] (the PeerSim jar, release folder or sources)}
shift
nodes=("$@")
[ ${#nodes[@]} -gt 0 ] || nodes=(100000 1000000)

jars_in() { { find "$1" \( -name 'jep*.jar' -o -name 'djep*.jar' \) -print 2>/dev/null || true; } | sort | tr '\n' ':'; }

if [ -f "$src" ]; then
  cp="$src:$(jars_in "$(dirname "$src")")"
elif [ -d "$src" ] && ls "$src"/peersim-*.jar >/dev/null 2>&1; then
  cp="$(ls "$src"/peersim-*.jar | head -1):$(jars_in "$src")"
elif [ -d "$src" ]; then
  sim=$(find "$src" -path '*/peersim/Simulator.java' -print -quit)
  agg=$(find "$src" -path '*/example/aggregation/AverageFunction.java' -print -quit)
  [ -n "$sim" ] && [ -n "$agg" ] || { echo "run.sh: no PeerSim sources under $src" >&2; exit 2; }
  jep="$(jars_in "$src")$(jars_in "${JEP_DIR:-/nonexistent}")"
  [ -n "$jep" ] || { echo "run.sh: jep-*.jar/djep-*.jar not found (set JEP_DIR)" >&2; exit 2; }
  build=${PEERSIM_BUILD:-/tmp/peersim-build}
  mkdir -p "$build/classes"
  { find "$(dirname "$(dirname "$sim")")/peersim" -name '*.java'
    find "$(dirname "$agg")" -name '*.java'; } > "$build/sources.txt"
  javac -nowarn -encoding ISO-8859-1 -d "$build/classes" -cp "$jep" @"$build/sources.txt" 2>&1 \
    | grep -v '^Note:' >&2 || true
  cp="$build/classes:$jep"
else
  echo "run.sh: $src: no such file or folder" >&2
  exit 2
fi

for n in "${nodes[@]}"; do
  out=$(mktemp -d)
  /usr/bin/time -v java -cp "$cp" peersim.Simulator "$here/averaging.txt" "network.size=$n" \
    > "$out/observer.txt" 2> "$out/stderr.txt"
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$out/stderr.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$out/stderr.txt")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$out/stderr.txt")
  cycles=$(grep -c '^control.avgo: ' "$out/observer.txt" || true)
  printf '{"workload": "cycle", "simulator": "peersim-1.0.5", "nodes": %d, "cycles_observed": %d, "wall_s": %s, "cpu_s": %s, "peak_rss_mib": %s, "load_avg": "%s"}\n' \
    "$n" "$cycles" "$wall" "$cpu" "$rss" "$(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf "$out"
done
