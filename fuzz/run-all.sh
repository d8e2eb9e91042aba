#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each, starting from the committed seeds in fuzz/seeds/<target>/.
#
#   fuzz/run-all.sh SECONDS [TARGET...]      (default: every target `cargo fuzz list` knows)
#
# Seeds are copied into a temporary corpus per target, so fuzz/corpus stays untracked and the seeds unchanged.
# Crashes are saved under fuzz/artifacts/<target>/ by libFuzzer; the script goes on with the other targets and
# exits 1 at the end if any target failed. Env: FUZZ_TOOLCHAIN (default "nightly").
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

cd "$(dirname "$0")"
toolchain=${FUZZ_TOOLCHAIN:-nightly}
fuzz=(cargo "+$toolchain" fuzz)

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

echo "building the fuzz targets (running: ${targets[*]})"
"${fuzz[@]}" build

work=$(mktemp -d "${TMPDIR:-/tmp}/cnlink-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/corpus-$t"
    mkdir -p "$corpus"
    if [[ -d seeds/$t ]]; then
        cp seeds/"$t"/* "$corpus"/
    else
        echo "note: no seeds for $t (fuzz/seeds/$t), starting from an empty corpus"
    fi
    log="$work/$t.log"
    echo "== fuzz $t for ${seconds}s ($(find "$corpus" -type f | wc -l) seeds)"
    status=0
    "${fuzz[@]}" run "$t" "$corpus" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    line="$t: status=$status runs=${runs:-?} exec/s=${rate:-?} ${cov:-} corpus=$(find "$corpus" -type f | wc -l)"
    summary+=("$line")
    echo "   $line"
    if [[ $status -ne 0 ]]; then
        failed+=("$t")
        echo "---- last lines of the $t log ----"
        tail -40 "$log"
        echo "---- artifacts: $(pwd)/artifacts/$t/ ----"
    fi
done

echo "== fuzz summary (${seconds}s per target)"
printf '   %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz targets FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran clean"
