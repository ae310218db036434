#!/usr/bin/env bash
# The property tests (tests/properties.rs) with many more cases than `cargo test`
# runs (64 per property): PROPTEST_CASES=N to choose, 20000 by default.
# Not part of CI's default path: at 20000 cases it takes tens of minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
exec cargo test --release --test properties -- --test-threads=2 "$@"
