#!/usr/bin/env bash
# Software bills of materials (CycloneDX JSON) of what ships: the `wardline` binary's
# Rust crates, from Cargo.lock, and the web app's npm packages, from
# web/package-lock.json. Written to target/sbom/; each is checked to list what the lock
# files pin, so an empty or stale document fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-cyclonedx >/dev/null 2>&1 || cargo install --locked cargo-cyclonedx@0.5.7

out=target/sbom
rm -rf "$out"
mkdir -p "$out"
# cargo-cyclonedx writes a document beside every member's manifest. The binary's
# (crates/wardline, which links every other member) is the one that describes what
# ships; it is kept and the rest are removed, so the tree stays clean.
cargo cyclonedx --format json --describe crate --spec-version 1.5 -q
mv crates/wardline/wardline.cdx.json "$out/"
find crates -name '*.cdx.json' -delete
# The packages bundled into the web app (build tools such as vite are not shipped).
(cd web && npm sbom --sbom-format cyclonedx --omit dev --package-lock-only) > "$out/web-app.cdx.json"

python3 - "$out" <<'PY'
import json, pathlib, re, sys

out = pathlib.Path(sys.argv[1])
def components(path):
    document = json.loads(path.read_text())
    assert document.get("bomFormat") == "CycloneDX", f"{path}: not a CycloneDX document"
    return {(c["name"], c.get("version")) for c in document.get("components", [])}

rust = out / "wardline.cdx.json"
listed = components(rust)
lock = pathlib.Path("Cargo.lock").read_text()
for crate in ("tokio", "rusqlite", "rustls", "axum", "argon2"):
    version = re.search(r'\[\[package\]\]\nname = "%s"\nversion = "([^"]+)"' % crate, lock).group(1)
    assert (crate, version) in listed, f"{rust}: {crate} {version} (Cargo.lock) is missing"
web = out / "web-app.cdx.json"
listed_web = components(web)
lock = json.loads(pathlib.Path("web/package-lock.json").read_text())
version = lock["packages"]["node_modules/uplot"]["version"]
assert ("uplot", version) in listed_web, f"{web}: uplot {version} (package-lock.json) is missing"
print(f"sbom: {len(listed)} Rust crates in {rust}, {len(listed_web)} npm packages in {web}")
PY
