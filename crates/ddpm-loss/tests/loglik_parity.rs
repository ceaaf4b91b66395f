//! Parity with the `loglik` fixture (float64 numpy transcription of improved-diffusion
//! `losses.py` and diffusion_tf's `_prior_bpd` / `_vb_terms_bpd`; see
//! `docs/fixtures.md`), run in float32 on Flex at the README's rtol 1e-5.
//!
//! Absolute floors come from an error model, not from fitting (see `common/mod.rs`): 2ε for
//! the CDF (an absolute-precision quantity), 2ε/p + 64ε for a bin's log-probability p (a
//! difference of CDFs, plus the rounding of the standardized bin edges), ε for KL terms. Worst
//! deviations seen: CDF 6.8e-8 abs; log-probs 1.7e-5 rel (3.6e-5 abs); normal KL 9.8e-7 rel;
//! prior 1.4e-7 rel; VLB terms 2.1e-5 rel on KLs of ~1e-4..1e-6 bits/dim (≤ 2.7e-7 abs);
//! decoder NLL ≤ 2.3e-7 rel. The companion `loglik_parity_f64.rs` runs the same code in
//! float64 at rtol 1e-9.

mod common;

use burn::backend::Flex;

#[test]
fn loglik_fixture_in_f32() {
    let _ = common::run_all::<Flex>(&Default::default(), common::Tolerances::F32);
}
