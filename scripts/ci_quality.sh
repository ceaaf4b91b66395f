#!/usr/bin/env bash
# Quality gates CI runs after the tests (issue #15): clippy and rustdoc with warnings as errors,
# the dependency-weight check (no C build in a `flex`-only facade), and packaging of every
# published crate. Fails on the first gate that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Lints on every target, warnings are errors.
cargo clippy --locked --workspace --all-targets -- -D warnings

# Docs: broken intra-doc links and every other rustdoc warning are errors. Libraries only: the
# `ddpm` binary's doc comments are its `--help` text (clap), not rustdoc, and its docs would
# collide with the `ddpm` facade's (cargo#6313).
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --lib

# No C code in a sampling-only CPU build of the facade.
bash scripts/check_pure_rust.sh

# Every publishable crate packages (manifest, README, licence files, excluded fixtures, size).
# `--no-verify`: building each package again from its tarball would double the CI's compile
# time; the workspace build above compiles the same sources.
cargo package --locked --workspace --no-verify --allow-dirty --exclude ddpm-testutil --exclude ddpm-gpu-tests --exclude ddpm-benches \
  --exclude ddpm-examples
for crate in target/package/*.crate; do
  size=$(stat -c %s "$crate")
  if (( size > 10 * 1024 * 1024 )); then
    echo "$crate is $size bytes: over crates.io's 10 MiB limit" >&2
    exit 1
  fi
  echo "$(basename "$crate"): $(( size / 1024 )) KiB"
done
