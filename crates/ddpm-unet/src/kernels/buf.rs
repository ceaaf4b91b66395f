//! Output buffers of the kernels.
//!
//! A kernel's output is allocated on the calling thread before its parallel loop starts, and
//! `vec![0f32; len]` zeroes it there, on one core, while the rest of the pool waits: in a
//! `mnist` training step at b64 these serial memsets were ~4% of the CPU time, all of it on the
//! critical path. [`zeroed`] lets the pool zero large buffers (and take their page faults) in
//! parallel instead. Outputs that a kernel writes in full skip the zeros altogether
//! ([`uninit`], [`assume_init`]).

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

/// `len` uninitialised floats for a kernel that writes every one of them before anything
/// reads them (an output pass, a transpose): zeroing them first, as [`zeroed`] does, is one
/// more pass over memory that is not in cache yet, which measured 1.5–2% of an `mnist-small`
/// or `mnist` training step (about 5% while the machine's shared cache was contended).
/// [`assume_init`] hands the written buffer on.
///
/// With debug assertions (the test builds) the floats start as NaN instead, so that a kernel
/// leaving one unwritten fails its tests rather than passing on memory that happened to be
/// zero.
pub(crate) fn uninit(len: usize) -> Vec<MaybeUninit<f32>> {
    if cfg!(debug_assertions) {
        return vec![MaybeUninit::new(f32::NAN); len];
    }
    let mut v = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation; the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// `v` as floats.
///
/// # Safety
///
/// Every element of `v` must have been written.
pub(crate) unsafe fn assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller guarantees every element
    // is initialised; the allocation is handed over whole (pointer, length, capacity), and
    // `ManuallyDrop` keeps `v` from freeing it.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
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

    /// [`SharedMut::new`] for a buffer not written yet (its tasks write through [`at`](Self::at)).
    pub(crate) fn new_uninit(buf: &mut [MaybeUninit<f32>]) -> Self {
        Self(buf.as_mut_ptr().cast())
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
    fn uninit_buffers_hand_on_what_was_written() {
        for len in [0, 1, PAR_MIN + 7] {
            let mut v = uninit(len);
            for (i, x) in v.iter_mut().enumerate() {
                x.write(i as f32);
            }
            // SAFETY: every element was written above.
            let v = unsafe { assume_init(v) };
            assert!(
                v.iter().enumerate().all(|(i, &x)| x == i as f32),
                "len {len}"
            );
        }
        // Test builds start them as NaN, so an unwritten float shows in a kernel's results.
        if cfg!(debug_assertions) {
            assert!(
                uninit(3)
                    .iter()
                    .all(|x| unsafe { x.assume_init() }.is_nan())
            );
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
