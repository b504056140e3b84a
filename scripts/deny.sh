#!/usr/bin/env bash
# cargo deny check (advisories, bans, licences, sources; see deny.toml), offline.
# The RustSec advisory database is read from the copy beside the project
# (../shared/advisory-db/advisory-db.bundle), installed where cargo-deny looks for it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny@0.20.2

advisories="${WARDLINE_ADVISORY_DB:-../shared/advisory-db}"
bundle="$advisories/advisory-db.bundle"
if [ ! -f "$bundle" ]; then
  echo "deny: the advisory database is missing: $bundle (set WARDLINE_ADVISORY_DB to the folder that holds advisory-db.bundle)" >&2
  exit 1
fi
# cargo-deny's directory name for the default advisory database URL.
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
rm -rf "$db"
mkdir -p "$(dirname "$db")"
git clone -q "$bundle" "$db"
# cargo-deny judges the database's age by FETCH_HEAD.
git -C "$db" fetch -q origin
# Every platform's crates, so that metadata works offline.
cargo fetch --locked -q
cargo deny --offline check
