#!/usr/bin/env bash
# Reruns every benchmark of BENCHMARKS.md with settings short enough for a small (2-core) machine, one after the
# other, and prints a summary. Full logs: target/bench-logs/<bench>.log.
#
#   scripts/bench.sh            # all: codes, stores, http, footprint (some 5 minutes on 2 cores, plus the build)
#   scripts/bench.sh codes http # some of them
#
# Criterion settings: OTAC_BENCH_CRITERION (default "--warm-up-time 1 --measurement-time 2 --sample-size 30").
# The stores benchmark measures the Redis store against raw SET NX PX when OTAC_TEST_REDIS_URL is set or a
# redis-server is on the PATH, and skips that part otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

criterion_args=${OTAC_BENCH_CRITERION:---warm-up-time 1 --measurement-time 2 --sample-size 30}
logs=target/bench-logs
mkdir -p "$logs"
benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
  benches=(codes stores http footprint)
fi

# Build first, so that the time limits below are for running only.
cargo bench --no-run --locked "${benches[@]/#/--bench=}" >/dev/null

run() {
  local bench=$1 limit=$2
  shift 2
  echo "== $bench" >&2
  # shellcheck disable=SC2086 # the criterion arguments are words
  if ! timeout "$limit" cargo bench --locked --bench "$bench" -- "$@" >"$logs/$bench.log" 2>&1; then
    echo "$bench: failed or took longer than $limit (see $logs/$bench.log)" >&2
    tail -n 20 "$logs/$bench.log" >&2
    return 1
  fi
}

# Criterion's report: "name  time: [lo est hi]" (the name on the line before when it is long), and "thrpt:";
# the comparison with an earlier run ("change:") is left out.
criterion_summary() {
  awk '
    /^Benchmarking / { next }
    /change:/ { change = 1; next }
    /^[^ ]/ { change = 0 }
    change { next }
    /time:/ {
      name = ($1 == "time:") ? last : $1
      sub(/^.*time: *\[/, ""); split($0, t, " ")
      printf "  %-58s %s %s\n", name, t[3], t[4]
      next
    }
    /thrpt:/ { sub(/^.*thrpt: *\[/, ""); split($0, t, " "); printf "  %-58s %s %s\n", "", t[3], t[4]; next }
    NF > 0 { last = $1 }
  ' "$1"
}

status=0
for bench in "${benches[@]}"; do
  case $bench in
    codes | stores)
      # shellcheck disable=SC2086
      run "$bench" 900 $criterion_args || status=1
      ;;
    http)
      run http 600 || status=1
      ;;
    footprint)
      # No arguments: it reads a word as a filter.
      run footprint 300 || status=1
      ;;
    *)
      echo "unknown benchmark: $bench" >&2
      status=1
      ;;
  esac
done

echo
echo "Summary (machine: $(nproc) cores; $(uname -sr))"
for bench in "${benches[@]}"; do
  log=$logs/$bench.log
  [ -f "$log" ] || continue
  echo
  echo "[$bench]"
  case $bench in
    codes)
      criterion_summary "$log"
      grep -E '^codes paired' "$log" | sed 's/^/  /' || true
      ;;
    stores)
      criterion_summary "$log"
      grep -E '^redis_consume (paired|: no Redis)|skipped' "$log" | sed 's/^/  /' || true
      ;;
    http)
      sed -n '/^http:/,$p' "$log" | sed 's/^/  /'
      ;;
    footprint)
      grep -E 'MemoryStore footprint|skipped' "$log" | sed 's/^/  /' || true
      ;;
  esac
done
exit $status
