//! Parity with the `loglik` fixture in float64: the device's default float type is set to F64
//! before any tensor exists (its own test binary, one test), so the same generic code runs in
//! double precision. Tolerance: the README's rtol 1e-9 for an f64 implementation, plus the
//! reference's own rounding (2ε for the CDF, 2ε/p for a log-probability p, ε for cancelling
//! prior and KL terms); see `common/mod.rs`. Worst deviations seen: log-probs 9.7e-8 rel (at
//! p ≈ 1e-11, where numpy's ½(1 + tanh) form loses digits), decoder NLL 2.1e-8 rel at t = 999
//! (3.8e-14 rel at t = 0), KL terms 3.6e-10 rel, prior 3.6e-9 rel of 5.9e-10 bits/dim.

mod common;

use burn::backend::Flex;
use burn::tensor::{DType, set_default_dtypes};

#[test]
fn loglik_fixture_in_f64() {
    let device = Default::default();
    set_default_dtypes::<Flex>(&device, DType::F64, DType::I64).expect("first use of the device");
    let _ = common::run_all::<Flex>(&device, common::Tolerances::F64);
}
