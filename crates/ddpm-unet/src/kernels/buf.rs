//! Output buffers of the kernels.
//!
//! A kernel's output is allocated on the calling thread before its parallel loop starts, and
//! `vec![0f32; len]` zeroes it there, on one core, while the rest of the pool waits: in a
//! `mnist` training step at b64 these serial memsets were ~4% of the CPU time, all of it on the
//! critical path. [`zeroed`] lets the pool zero large buffers (and take their page faults) in
//! parallel instead.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Floats below which a buffer is zeroed on the calling thread (the pool's hand-off costs more).
const PAR_MIN: usize = 1 << 15;

/// `len` zeros, written by the rayon pool when `len` is large.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    if len < PAR_MIN {
        return vec![0f32; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(PAR_MIN / 2)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above initialised the first `len` elements (the capacity is ≥ len).
    unsafe { v.set_len(len) };
    v
}

/// A buffer's base pointer shared by parallel tasks that write disjoint parts of it (the
/// kernels' strided or scattered outputs, which `par_chunks_mut` cannot split).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(*mut f32);
// SAFETY: every task writes a region of the buffer no other task touches, and the buffer
// outlives the parallel loop (the constructor's caller keeps it alive and unborrowed).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The base of `buf`, which the caller keeps alive and otherwise untouched while tasks
    /// write through the result.
    pub(crate) fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr())
    }

    /// The pointer `i` floats on (a method, so closures capture the `Sync` wrapper whole).
    ///
    /// # Safety
    ///
    /// `i` must lie inside the buffer (or one past its end).
    pub(crate) unsafe fn at(self, i: usize) -> *mut f32 {
        unsafe { self.0.add(i) }
    }
}

/// A copy of `src`, written by the rayon pool when it is large.
pub(crate) fn copied(src: &[f32]) -> Vec<f32> {
    if src.len() < PAR_MIN {
        return src.to_vec();
    }
    let mut v: Vec<f32> = Vec::with_capacity(src.len());
    v.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(PAR_MIN / 2)
        .zip(src.par_chunks(PAR_MIN / 2))
        .for_each(|(dst, src)| {
            for (d, &s) in dst.iter_mut().zip(src) {
                d.write(s);
            }
        });
    // SAFETY: the loop above initialised the first `src.len()` elements.
    unsafe { v.set_len(src.len()) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_all_zeros_at_every_size() {
        for len in [0, 1, PAR_MIN - 1, PAR_MIN, PAR_MIN + 7, 5 * PAR_MIN + 3] {
            let v = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0), "len {len}");
        }
    }

    #[test]
    fn copied_equals_the_source_at_every_size() {
        for len in [0, 1, PAR_MIN - 1, PAR_MIN, PAR_MIN + 7, 5 * PAR_MIN + 3] {
            let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(copied(&src), src, "len {len}");
        }
    }
}
