#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document, over real sockets:
#   1. web/openapi.json validates as OpenAPI 3.1 (openapi-spec-validator);
#   2. schemathesis generates requests from the document served by a running server,
#      as an admin, and checks every response against it (--checks all).
# Settings in schemathesis.toml. Exits non-zero on any failure.
#   WARDLINE_BIN            the binary to run (default target/debug/wardline, built if absent)
#   WARDLINE_CONTRACT_EXAMPLES  examples per operation (default 25)
#   WARDLINE_CONTRACT_SEED      generation seed (default 1, so CI runs are repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="$root/target/contract-venv"
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5" "openapi-spec-validator==0.7.2"
fi

echo "-- web/openapi.json is a valid OpenAPI document"
"$venv/bin/openapi-spec-validator" web/openapi.json

bin="${WARDLINE_BIN:-$root/target/debug/wardline}"
[ -x "$bin" ] || cargo build --locked -q -p wardline

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A new data folder: `--init` lets `admin` make its database.
password="contract-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$password" | "$bin" admin --init --data-dir "$work/data" create-user \
  --username contract-admin --display-name "Contract admin" --role admin --password-stdin >/dev/null
"$bin" serve --data-dir "$work/data" --plaintext \
  --mqtt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --listen-file "$work/listen.json" \
  >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  [ -s "$work/listen.json" ] && break
  sleep 0.1
done
if [ ! -s "$work/listen.json" ]; then
  echo "the server did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/listen.json")
base="http://$http"
token=$(curl -sf -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"contract-admin\",\"password\":\"$password\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# Administrators must have a second factor: the contract admin sets one up, computing
# the authenticator's code (RFC 6238, HMAC-SHA-1) with Python's standard library.
secret=$(curl -sf -X POST "$base/api/v1/me/second-factor" -H "authorization: Bearer $token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
code=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, struct, sys, time
secret = sys.argv[1]
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
offset = mac[-1] & 0x0F
print("%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000))
PY
)
curl -sf -X POST "$base/api/v1/me/second-factor/confirm" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d "{\"one_time_code\":\"$code\"}" >/dev/null

echo "-- schemathesis against $base"
status=0
"$venv/bin/st" --config-file "$root/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --url "$base" \
  --checks all \
  --max-response-time 10 \
  -H "Authorization: Bearer $token" \
  --max-examples "${WARDLINE_CONTRACT_EXAMPLES:-25}" \
  --seed "${WARDLINE_CONTRACT_SEED:-1}" \
  --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "server log (last 40 lines):" >&2
  tail -40 "$work/server.log" >&2
fi
exit "$status"
