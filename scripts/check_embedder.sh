#!/usr/bin/env bash
# Issue #15: `ddpm` as another project's dependency. Builds scripts/embedder (a crate outside
# the workspace with `ddpm = { path = ..., default-features = false, features = ["flex"] }`)
# with no C compiler (CC and CXX point at /bin/false, so any C build fails), runs it (it loads
# the tiny diffusers fixture, builds a DDIM sampler from a scheduler config and samples through
# the library), checks that its dependency tree has no crate with a C build, and type-checks the
# same crate with `features = ["wgpu"]` instead.
#
#   scripts/check_embedder.sh          # CARGO_TARGET_DIR defaults to the workspace's target/
#
# Exits non-zero when the build, the run or a check fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/scripts/embedder"
# Share the workspace's target directory (the crate's own unoptimized profile shares little with
# the workspace's builds, but a second target directory would cost disk on CI).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

echo "== build with no C compiler (CC=/bin/false CXX=/bin/false)"
CC=/bin/false CXX=/bin/false cargo build --locked
echo "== run: sample through the library"
CC=/bin/false CXX=/bin/false cargo run --locked --quiet

echo "== dependency tree: no C build"
c_build='^(cc|cmake|bindgen|pkg-config|vcpkg) '
offenders=$(cargo tree --locked -e normal,build --prefix none | sort -u | grep -E "$c_build" || true)
if [[ -n "$offenders" ]]; then
  echo "the flex-only embedder depends on crates that build C code:" >&2
  echo "$offenders" >&2
  exit 1
fi
echo "$(cargo tree --locked -e normal,build --prefix none | sort -u | wc -l) crates, none with a C build"

echo "== features = [\"wgpu\"] type-checks"
cargo check --locked --no-default-features --features wgpu
