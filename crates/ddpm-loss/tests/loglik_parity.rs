//! Parity with the `loglik` fixture (float64 numpy transcription of improved-diffusion
//! `losses.py` and diffusion_tf's `_prior_bpd` / `_vb_terms_bpd`; see
//! `shared/fixtures/README.md`), run in float32 on Flex.
//!
//! The README's tolerance for an f32 implementation is rtol 1e-5. Where float32 itself cannot
//! carry the reference value (CDF tails below f32 resolution near 0 or 1, log-probabilities of
//! bins whose probability is a difference of two CDFs close to 1, KL terms of ~1e-6 bits/dim that
//! are differences of O(1) means), an absolute tolerance is added and named in each check; the
//! companion `loglik_parity_f64.rs` runs the same code in float64 at rtol 1e-9.

mod common;

use burn::backend::Flex;

#[test]
fn loglik_fixture_in_f32() {
    let _ = common::run_all::<Flex>(&Default::default(), common::Tolerances::F32);
}
