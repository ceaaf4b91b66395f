//! `dst (+)= lhs · rhs` on strided views of `f32` slices, through the `gemm` crate (the
//! same gemm Burn's Flex backend uses; AVX-512 micro-kernels where the CPU has them).

use gemm::Parallelism;

/// A strided view of a row-major-addressable matrix: element `(r, c)` at `r·rs + c·cs`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    /// Panics (an internal invariant, not user input) if the view leaves its slice.
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len());
        }
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, `dst` row-major with row stride `n`.
#[allow(clippy::too_many_arguments)] // gemm's own signature, minus what is fixed here
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n);
    lhs.check(m, k);
    rhs.check(k, n);
    // SAFETY: the three views were bounds-checked above for the m×k, k×n and m×n extents
    // gemm reads and writes; `dst` is exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
