#!/usr/bin/env bash
# The whole test suite, as CI runs it (as root: it installs packages and creates test users):
#   L0 unit tests, L2 root tests and L3 end-to-end tests as root;
#   L0/L1 tests and L3 end-to-end tests again as `covetest` (subuid range) and `covenosub` (none).
# End-to-end suites must not skip (COVE_REQUIRE_ALL=1): a skip there fails the run.
# `cargo clippy -- -D warnings`, `cargo fmt --check`, the fuzz targets' build and
# tests/module-cycles.py run first and count as one test each.
# The last line is "N passed, M failed, K skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tests/run-all.sh: run as root (sudo bash tests/run-all.sh)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:/usr/local/cargo/bin:$PATH"
bash scripts/setup-host.sh

work=/tmp/cove-tests
rm -rf "$work"; mkdir -p "$work/bin" "$work/tmp"; chmod 755 "$work" "$work/bin"; chmod 1777 "$work/tmp"
log=$work/log; : > "$log"
scripts/make-rootfs.sh "$work/rootfs.tar" >/dev/null
chmod 644 "$work/rootfs.tar"

echo "== build"
cargo build --workspace --all-targets 2>&1 | tail -n 3
# Lints are the tool's, not the reviewer's: a clippy warning fails the suite (its own line in
# the summary's count).
echo "== clippy"
lint=0
cargo clippy --workspace --all-targets --quiet -- -D warnings >"$work/clippy" 2>&1 || lint=1
if [ $lint = 0 ]; then echo "   clean"; else tail -n 30 "$work/clippy" | sed 's/^/   | /'; echo "   -> FAILED (clippy -D warnings)"; fi
# Formatting is rustfmt's (rustfmt.toml): a diff fails the suite, counted like clippy.
echo "== fmt"
fmt=0
cargo fmt --all --check >"$work/fmt" 2>&1 || fmt=1
if [ $fmt = 0 ]; then echo "   clean"; else head -n 30 "$work/fmt" | sed 's/^/   | /'; echo "   -> FAILED (cargo fmt --check; run cargo fmt --all)"; fi
# The fuzz targets (crates/*/fuzz, outside the workspace) still build against the crates they
# feed: counted too (a target that no longer compiles fuzzes nothing).
echo "== fuzz targets build"
fuzzb=0
for d in crates/*/fuzz; do
  (cd "$d" && cargo check --quiet) >"$work/fuzz" 2>&1 || { fuzzb=1; tail -n 20 "$work/fuzz" | sed 's/^/   | /'; echo "   -> FAILED ($d)"; }
done
[ $fuzzb = 1 ] || echo "   ok"
# No import circle among the top-level modules of a crate (tests/module-cycles.py), counted too.
echo "== module circles"
circ=0
python3 tests/module-cycles.py >"$work/circles" 2>&1 || circ=1
sed 's/^/   /' "$work/circles"; [ $circ = 0 ] || echo "   -> FAILED (import circle)"
cargo test --workspace --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        print(m["target"]["name"], m["executable"])
' > "$work/tests.list"
while read -r name exe; do
  cp "$exe" "$work/bin/test-$name"
done < "$work/tests.list"
cp target/debug/cove target/debug/cove-monitor "$work/bin/"  # the monitor's pump lives next to cove
chmod 755 "$work/bin"/*

export COVE_BIN=$work/bin/cove COVE_TEST_ROOTFS=$work/rootfs.tar COVE_TEST_TMP=$work/tmp
status=0
run_suite() { # label, user (root|name), require_all, binary...
  local label=$1 user=$2 require=$3; shift 3
  for b in "$@"; do
    echo "== $label: $b"
    local envs=(COVE_BIN="$COVE_BIN" COVE_TEST_ROOTFS="$COVE_TEST_ROOTFS" COVE_TEST_TMP="$COVE_TEST_TMP" COVE_REQUIRE_ALL="$require" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    local rc=0
    if [ "$user" = root ]; then
      (cd "$work" && env "${envs[@]}" HOME=/root "$work/bin/test-$b" --test-threads=2 --nocapture) >"$work/out" 2>&1 || rc=$?
    else
      (cd "$work" && runuser -u "$user" -- env -i "${envs[@]}" HOME="/home/$user" USER="$user" LOGNAME="$user" "$work/bin/test-$b" --test-threads=2 --nocapture) >"$work/out" 2>&1 || rc=$?
    fi
    grep -E '^test result:|^SKIP:|panicked|FAILED|^failures:|^    [a-z_:]+$' "$work/out" | sed 's/^/   /' || true
    cat "$work/out" >> "$log"
    if [ $rc -ne 0 ]; then
      echo "   -> FAILED ($label $b, exit $rc); last lines:"; tail -n 40 "$work/out" | sed 's/^/   | /'
      status=1
    fi
  done
}

units=$(awk '$1 != "e2e" && $1 != "registry" {print $1}' "$work/tests.list" | sort -u)
run_suite "root" root 1 $units
run_suite "root e2e" root 1 e2e
run_suite "root registry" root 1 registry
run_suite "user with subuid range (covetest)" covetest 1 $units
run_suite "user with subuid range (covetest) e2e" covetest 1 e2e
run_suite "user with subuid range (covetest) registry" covetest 1 registry
run_suite "user without subuid range (covenosub) e2e" covenosub 1 e2e

passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
skipped=$(grep -cE '^SKIP:' "$log" || true)
echo "== summary"
grep -E '^SKIP:' "$log" | sort | uniq -c | sed 's/^/   /' || true
passed=$((passed + 4 - lint - fmt - circ - fuzzb)); failed=$((failed + lint + fmt + circ + fuzzb)); [ $((lint + fmt + circ + fuzzb)) = 0 ] || status=1
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit $status
