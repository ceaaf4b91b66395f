#!/usr/bin/env bash
# Dependency-weight check (issue #15): the `ddpm` facade as a sampling-only embedder takes it
# (`default-features = false` plus one backend) must not build any C code. A crate builds C
# through a build dependency on `cc`, `cmake`, `bindgen` or `pkg-config`; if one of those is in
# the normal+build dependency tree, some `*-sys` crate compiles or links a C library.
# Checked twice: `flex` alone, and every default feature but `pytorch` (`flex`, `pipeline`,
# `train`, `data`, `eval`: trainer, data loaders, image codecs and the evaluation metrics are
# pure Rust too). Exits non-zero, naming the path to the offender, when one comes back.
#
# Only the CPU build is held to this: `wgpu` on Linux brings `wayland-sys`, whose build script
# probes the system with `pkg-config` (it compiles no C; the library is dlopen'ed at run time).
# That is wgpu's choice, outside this project; CI `cargo check`s the `wgpu` build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

c_build='^(cc|cmake|bindgen|pkg-config|vcpkg|autocfg-c) '
status=0
for features in flex flex,pipeline,train,data,eval; do
  tree=$(cargo tree --locked -p ddpm --no-default-features --features "$features" \
    -e normal,build --prefix none)
  offenders=$(printf '%s\n' "$tree" | sort -u | grep -E "$c_build" || true)
  if [[ -n "$offenders" ]]; then
    echo "ddpm (default-features = false, features = [\"$features\"]) builds C code:" >&2
    while read -r name _; do
      cargo tree --locked -p ddpm --no-default-features --features "$features" \
        -e normal,build -i "$name" >&2
    done <<<"$offenders"
    status=1
  else
    printf "ddpm with features [\"$features\"] only: $(printf '%s\n' "$tree" | sort -u | wc -l) crates, none with a C build\n"
  fi
done
exit $status
