#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time with libFuzzer (through cargo-fuzz,
# on the stable toolchain: no sanitizer, so no nightly flags; Rust's own checks and the
# targets' assertions are what catch a fault). Exits non-zero on the first crash, leaving
# the input that caused it in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [seconds per target]     (default 60)
#
# Each target's corpus starts from the seeds in fuzz/seeds/<target>/, the project's own
# test fixtures and, where it is present, the real data beside the project
# (WARDLINE_SHARED_DATA), and grows in fuzz/corpus/<target>/ (not committed) from run to
# run. The last lines print each target's executions and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
root="$(pwd)"
shared="${WARDLINE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz --version 0.13.1
fi

cd fuzz
cargo fuzz build --sanitizer none --release 2>&1 | tail -n 3
binaries="$root/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
targets=$(cargo fuzz list)

# Seeds: the largest real files are cut to the first 64 KiB, which is also the longest
# input the fuzzer makes (-max_len), so the fuzzer starts from real structure at the size
# it works with.
seed() { # target, files...
  local target="$1"
  shift
  mkdir -p "corpus/$target"
  for file in "$@"; do
    [ -f "$file" ] || continue
    head -c 65536 "$file" >"corpus/$target/seed-$(basename "$(dirname "$file")")-$(basename "$file")"
  done
}
seed_found() { # target, folder, name pattern, at most how many
  local found=()
  if [ -d "$2" ]; then
    mapfile -t found < <(find "$2" -type f -name "$3" | sort | head -n "$4")
  fi
  [ ${#found[@]} -eq 0 ] || seed "$1" "${found[@]}"
}
for target in $targets; do
  mkdir -p "corpus/$target"
  [ -d "seeds/$target" ] && seed "$target" seeds/"$target"/*
done
seed waveform_chunk "$root"/crates/waveform/tests/fixtures/*.bin
if [ -d "$shared" ]; then
  seed_found wfdb_header "$shared/ecg" '*.hea' 40
  seed_found wfdb_annotations "$shared/ecg" '*.atr' 12
  seed_found wfdb_signals "$shared/ecg" '*.dat' 6
  seed_found cgm_files "$shared/cgm" '*.csv' 12
  seed_found nightscout_upload "$shared/nightscout/fixtures" '*.json' 4
  seed_found mapping_template "$shared/mapping-templates" '*.json' 80
  seed_found fhir_upload "$shared/fhir" '*.json' 40
else
  echo "note: shared data not found at $shared; fuzzing from the project's own seeds only" >&2
fi

total=0
summary=()
for target in $targets; do
  mkdir -p "artifacts/$target"
  log="$(mktemp)"
  echo "== fuzz $target (${seconds} s)"
  if ! "$binaries/$target" "corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  corpus=$(ls "corpus/$target" | wc -l)
  rm -f "$log"
  total=$((total + runs))
  summary+=("$(printf '%-18s %12s executions, %5s inputs in the corpus, 0 crashes' "$target" "$runs" "$corpus")")
done
printf '%s\n' "${summary[@]}"
echo "fuzzing: $total executions over ${#summary[@]} targets, ${seconds} s each, 0 crashes"
