#!/usr/bin/env bash
# Quality gates CI runs after the tests (issue #15): clippy (with every backend feature) and
# rustdoc with warnings as errors, the GPU-only builds,
# the dependency-weight check (no C build in a `flex`-only facade), and packaging of every
# published crate. Fails on the first gate that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Lints on every target with every backend feature (Flex, the wgpu family and CUDA at once),
# warnings are errors. This is also CI's check that every backend feature builds (issue #7).
all_backends=ddpm-cli/wgpu,ddpm-cli/vulkan,ddpm-cli/metal,ddpm-cli/cuda
all_backends+=,ddpm-examples/wgpu,ddpm-examples/vulkan,ddpm-examples/metal,ddpm-examples/cuda
all_backends+=,ddpm-gpu-tests/wgpu,ddpm-gpu-tests/vulkan,ddpm-gpu-tests/metal,ddpm-gpu-tests/cuda
all_backends+=,ddpm-benches/wgpu,ddpm-benches/cuda
all_backends+=,ddpm/wgpu,ddpm/vulkan,ddpm/metal,ddpm/cuda
cargo clippy --locked --workspace --all-targets --features "$all_backends" -- -D warnings

# A build can drop the CPU backend: the binaries and examples with GPU backends only (seconds:
# the dependency stack is the one clippy just checked; only burn's facade and our crates are
# re-checked).
cargo check --locked -p ddpm-cli -p ddpm-examples --all-targets --no-default-features \
  --features wgpu,vulkan,metal,cuda

# Docs: broken intra-doc links and every other rustdoc warning are errors. Libraries only: the
# `ddpm` binary's doc comments are its `--help` text (clap), not rustdoc, and its docs would
# collide with the `ddpm` facade's (cargo#6313). With the same features as clippy, so the
# dependencies' metadata is reused.
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --lib --features "$all_backends"

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
