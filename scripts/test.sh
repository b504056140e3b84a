#!/usr/bin/env bash
# Runs Wardline's whole test suite. Installs what the tests need but Cargo cannot fetch:
# Mosquitto's command-line clients (the independent MQTT client the tests use), curl (an
# independent HTTP/2 client), promtool (which checks the metrics) and Python's aiosmtpd
# (the real SMTP server the e-mail tests deliver to) and py-nightscout (a real Nightscout
# client, which reads a Wardline Nightscout site in the tests), fhirpy and the SMART
# fhirclient (real FHIR clients, which search and page through Wardline's FHIR API in
# the tests), PyJWT (with which a hospital system signs its SMART Backend Services
# assertion in the tests) and fhir.resources
# (an independent FHIR R4 validator of what that API returns), and Medplum's FHIR validator
# (npm), which checks the profiles resources claim. Node.js reads Nightscout's own test
# fixtures and runs that validator.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v mosquitto_pub >/dev/null 2>&1 || need_packages+=(mosquitto-clients)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
command -v node >/dev/null 2>&1 || need_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
# promtool checks the metrics exposition (Debian's prometheus package has it).
command -v promtool >/dev/null 2>&1 || need_packages+=(prometheus)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "installing: ${need_packages[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}"
  fi
fi

# Tests that use the real data beside the project find it here (see README).
export WARDLINE_SHARED_DATA="${WARDLINE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
if [ ! -d "$WARDLINE_SHARED_DATA" ]; then
  echo "note: shared data not found at $WARDLINE_SHARED_DATA; the data tests will fail and say so." >&2
  echo "      Set WARDLINE_SHARED_DATA to the folder holding ecg/, cgm/, news2/." >&2
fi

python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install --quiet aiosmtpd
python3 -c "import py_nightscout" 2>/dev/null || python3 -m pip install --quiet "py-nightscout==1.3.3"
python3 -c "import fhirpy" 2>/dev/null || python3 -m pip install --quiet "fhirpy==2.3.1"
python3 -c "import fhirclient" 2>/dev/null || python3 -m pip install --quiet "fhirclient==4.3.1"
python3 -c "import jwt, cryptography" 2>/dev/null || python3 -m pip install --quiet "PyJWT[crypto]==2.10.1"
# The independent FHIR validator (the R4 models of fhir.resources, which need pydantic 1)
# in an environment of its own, so that it cannot clash with other Python packages.
if ! target/fhir-validator/bin/python -c "import fhir.resources" 2>/dev/null; then
  python3 -m venv target/fhir-validator
  target/fhir-validator/bin/pip install --quiet "fhir.resources==6.5.0" "pydantic<2"
fi

# The second FHIR validator, Medplum's, which also checks the profiles a resource claims
# (the vital-signs profiles), from the npm registry by its lockfile.
[ -d scripts/fhir-profiles/node_modules/@medplum/core ] || npm ci --prefix scripts/fhir-profiles --silent --no-audit --no-fund

# A first build gains nothing from incremental compilation's caches, only their cost.
[ -d target/debug ] || export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Most integration tests wait on sockets and timers, so more run at once than there are
# cores (the default).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked "$@"
