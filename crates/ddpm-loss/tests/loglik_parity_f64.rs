//! Parity with the `loglik` fixture in float64: the device default float type is set to F64
//! before any tensor exists (its own test binary, one test), so the same generic code runs in
//! double precision. Tolerance: the README's rtol 1e-9 for an f64 implementation.

mod common;

use burn::backend::Flex;
use burn::tensor::{DType, set_default_dtypes};

#[test]
fn loglik_fixture_in_f64() {
    let device = Default::default();
    set_default_dtypes::<Flex>(&device, DType::F64, DType::I64).expect("first use of the device");
    let _ = common::run_all::<Flex>(&device, common::Tolerances::F64);
}
