//! Stride-1 convolutions as an implicit GEMM with AVX-512 or AVX2 + FMA micro-kernels (x86-64
//! only; the caller falls back to im2col + gemm where neither is present).
//!
//! Zero-pad each input channel into a plane of width `wp = ow + kw − 1` (the *grid*). Output
//! position `q = oy·wp + ox` of a stride-1 correlation reads tap (i, j) of channel c at
//! `c·plane + i·wp + j + q`: every row `(c, i, j)` of the im2col matrix is the padded plane
//! shifted by a constant. The micro-kernels read those rows in place, so nothing the size of
//! im2col (kh·kw times the input) is written, and gemm's operand packing disappears too. Each
//! grid row holds `kw − 1` extra positions past `ow`; they are computed and dropped.
//!
//! - forward: `y = W·X` on the grid, 8 output channels × 48 positions per micro-kernel (24
//!   zmm accumulators; with AVX2, 6 channels × 16 positions in 12 ymm); K = ci·kh·kw is blocked by at most 160 so the strip of the
//!   shifted rows stays in L1 while every 8-channel block of W passes over it;
//! - dx: the same kernel on the zero-padded dy with the flipped, transposed weights (the
//!   adjoint of a stride-1 correlation is the full correlation with the flipped kernel);
//! - dW: `dW[o][(c,i,j)] = Σ_n Σ_q dy_grid[o][q] · xpad[c][q + i·wp + j]`, 4 output channels
//!   × 6 rows `(c, i, j)` per micro-kernel, accumulated along q in 16 lanes (AVX2: 2 channels
//!   × 6 rows in 8 lanes, twice per 4-channel block), a few images at a time (so the 4 dy rows
//!   stay in L1 while all rows (c, i, j) pass), and reduced once.
//!
//! The AVX2 kernels are the AVX-512 ones at half the vector width and with fewer accumulators
//! (16 ymm registers against 32 zmm); they share the blocking and the grid.

use std::arch::x86_64::{
    __m256, __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
    _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_storeu_ps,
};

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{Add, ConvGeom};

/// Output channels per AVX-512 forward micro-kernel (and per block of packed weights).
const MR: usize = 8;
/// Most zmm vectors of grid positions per forward micro-kernel (1, 2 or 3 are used).
const NV_MAX: usize = 3;
/// Most grid positions per forward micro-kernel.
const NT: usize = 16 * NV_MAX;
/// Largest K block of the forward kernel (K is split into equal blocks no larger): 160 rows
/// of a 48-position strip are 30 KiB, which stay in L1 while every block of W passes.
const KC_MAX: usize = 160;
/// Output channels per dW micro-kernel (dy's channels are padded to a multiple of it).
pub(crate) const WR: usize = 4;
/// Rows `(c, i, j)` per dW micro-kernel.
const WS: usize = 6;

/// Output channels per AVX2 forward micro-kernel (and per block of packed weights): 6 × 2
/// ymm accumulators, 2 for the strip and 1 broadcast fill 15 of the 16 registers (4 × 3 needs
/// all 16, and LLVM then spills an accumulator to the stack in the inner loop).
const MR_AVX2: usize = 6;
/// Output channels per AVX2 dW micro-kernel (half of a [`WR`] block).
const WR_AVX2: usize = 2;

/// The instruction set the micro-kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: 16 lanes, 32 registers.
    Avx512,
    /// AVX2 + FMA: 8 lanes, 16 registers.
    Avx2,
}

impl Isa {
    /// f32 lanes per vector.
    pub(crate) fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    /// Output channels per forward micro-kernel (the block size of the packed weights).
    pub(crate) fn mr(self) -> usize {
        match self {
            Isa::Avx512 => MR,
            Isa::Avx2 => MR_AVX2,
        }
    }

    /// Most vectors of grid positions per forward micro-kernel.
    pub(crate) fn max_nv(self) -> usize {
        match self {
            Isa::Avx512 => NV_MAX,
            Isa::Avx2 => 2,
        }
    }
}

/// The widest instruction set of this CPU the kernels have micro-kernels for, if any
/// (`is_x86_feature_detected!` caches the answer).
pub(crate) fn isa() -> Option<Isa> {
    if std::is_x86_feature_detected!("avx512f") {
        Some(Isa::Avx512)
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        Some(Isa::Avx2)
    } else {
        None
    }
}

/// Whether this CPU runs the direct kernels (AVX-512, or AVX2 with FMA).
pub(crate) fn available() -> bool {
    isa().is_some()
}

/// Every instruction set of this CPU the kernels have micro-kernels for (the tests run each).
#[cfg(test)]
pub(crate) fn supported() -> Vec<Isa> {
    let mut all = Vec::new();
    if std::is_x86_feature_detected!("avx512f") {
        all.push(Isa::Avx512);
    }
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        all.push(Isa::Avx2);
    }
    all
}

/// This CPU's [`isa`]; callers have checked [`applies`].
pub(crate) fn this_isa() -> Isa {
    isa().unwrap_or_else(|| {
        unreachable!("direct kernels called without AVX-512 or AVX2 (see `applies`)")
    })
}

/// Whether the direct kernels serve `g`: an AVX-512 or AVX2 CPU, stride 1, a kernel larger than 1×1
/// (1×1 convolutions are plain gemms already) and padding smaller than the kernel on every
/// side (so the adjoint is again a correlation with non-negative padding).
pub(crate) fn applies(g: &ConvGeom) -> bool {
    g.sh == 1
        && g.sw == 1
        && g.kh * g.kw > 1
        && g.pt < g.kh
        && g.pl < g.kw
        && g.oh + g.kh > g.h + g.pt
        && g.ow + g.kw > g.w + g.pl
        && g.oh <= g.h + g.pt
        && g.ow <= g.w + g.pl
        && available()
}

/// The zero-padded planes of `c` channels of `h×w` images for a stride-1 correlation with a
/// `kh×kw` kernel, top/left padding `pt`/`pl` and an `oh×ow` output.
#[derive(Clone, Copy, Debug)]
struct Grid {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
    /// Row width of the grid: `ow + kw − 1`.
    wp: usize,
    /// Floats per padded channel, with slack for the last strip's over-reads.
    plane: usize,
}

impl Grid {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        pt: usize,
        pl: usize,
        oh: usize,
        ow: usize,
    ) -> Self {
        let wp = ow + kw - 1;
        let hp = oh + kh - 1;
        // A strip starting at the last grid position reads up to NT − 1 positions beyond
        // `oh·wp`, each shifted by at most (kh − 1)·wp + kw − 1.
        let plane = (hp * wp + NT + kw).next_multiple_of(16);
        Self {
            c,
            h,
            w,
            kh,
            kw,
            pt,
            pl,
            oh,
            ow,
            wp,
            plane,
        }
    }

    /// Output positions on the grid: `oh·wp`.
    fn q(&self) -> usize {
        self.oh * self.wp
    }

    /// Offsets of the rows `(c, i, j)` (in im2col order) from the start of an image's planes.
    fn row_offsets(&self) -> Vec<usize> {
        tap_offsets(self.c, [self.kh, self.kw], self.plane, self.wp, 1)
    }

    /// `n` images `[n][c][h][w]` copied into zeroed grids `[n][c][plane]`.
    fn pad(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = super::buf::zeroed(n * self.c * self.plane);
        let (h, w) = (self.h, self.w);
        out.par_chunks_mut(self.plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (iy, row) in src.chunks_exact(w).enumerate() {
                    let at = (iy + self.pt) * self.wp + self.pl;
                    dst[at..at + w].copy_from_slice(row);
                }
            });
        out
    }
}

/// `c·plane + (i·wp + j)·unit` for every row `(c, i, j)` of the im2col matrix (in its order):
/// where tap `(i, j)` of channel `c` starts relative to an output position, on a grid of
/// `wp` columns of `unit` floats and `plane` floats per channel.
pub(crate) fn tap_offsets(
    c: usize,
    [kh, kw]: [usize; 2],
    plane: usize,
    wp: usize,
    unit: usize,
) -> Vec<usize> {
    let mut off = Vec::with_capacity(c * kh * kw);
    for ch in 0..c {
        for i in 0..kh {
            for j in 0..kw {
                off.push(ch * plane + (i * wp + j) * unit);
            }
        }
    }
    off
}

/// Pointer wrapper for the micro-kernels' raw reads (shared across rayon workers).
#[derive(Clone, Copy)]
struct Ptr(*const f32);
// SAFETY: only ever read through, from slices that outlive the parallel loops.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

/// `a[cb][k][r] = w[cb·mr + r][k]` (0 past `co`): the weights in `mr`-channel blocks,
/// k-major. Blocks are packed in parallel (this runs before every convolution, and on the
/// calling thread it kept the pool waiting).
pub(crate) fn pack_weights(w: &[f32], co: usize, k: usize, mr: usize) -> Vec<f32> {
    pack_blocks(co, k, mr, |o, row| {
        row.copy_from_slice(&w[o * k..(o + 1) * k])
    })
}

/// The weights of the input gradient, `W'[c][o][i][j] = W[o][c][kh − 1 − i][kw − 1 − j]`,
/// packed in `mr`-channel blocks of input channels c with k = (o, t), t = i·kw + j:
/// `a[c / mr][o·taps + t][c % mr] = W[o][c][taps − 1 − t]`.
pub(crate) fn pack_flipped(g: &ConvGeom, w: &[f32], mr: usize) -> Vec<f32> {
    let taps = g.kh * g.kw;
    pack_blocks(g.ci, g.co * taps, mr, |c, row| {
        for (o, dst) in row.chunks_exact_mut(taps).enumerate() {
            let src = &w[(o * g.ci + c) * taps..][..taps];
            for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = v;
            }
        }
    })
}

/// `a[cb][kk][r] = row(cb·mr + r)[kk]` for `cb·mr + r < co` (0 past `co`), `kk < k`, filled
/// one block per task: `fill(o, row)` writes output `o`'s `k` values contiguously (no index
/// arithmetic per element), which are then scattered into the block with stride `mr`.
fn pack_blocks(
    co: usize,
    k: usize,
    mr: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let blocks = co.div_ceil(mr);
    let mut a = vec![0f32; blocks * k * mr];
    if a.is_empty() {
        return a;
    }
    a.par_chunks_mut(k * mr).enumerate().for_each_init(
        || vec![0f32; k],
        |row, (cb, block)| {
            for r in 0..mr.min(co - cb * mr) {
                fill(cb * mr + r, row);
                for (dst, &v) in block.iter_mut().skip(r).step_by(mr).zip(row.iter()) {
                    *dst = v;
                }
            }
        },
    );
    a
}

/// The correlation of the padded images `xpad` (`[n][grid.c][plane]`) with the packed
/// weights `a` (`co` outputs): `y[n][o][oy][ox] = bias[o] + Σ_k W[o][k]·row_k[oy·wp + ox]`.
#[allow(clippy::too_many_arguments)]
fn correlate(
    isa: Isa,
    grid: &Grid,
    n: usize,
    co: usize,
    xpad: &[f32],
    a: &[f32],
    bias: Option<&[f32]>,
    add: Add<'_>,
) -> Vec<f32> {
    let (oh, ow, wp) = (grid.oh, grid.ow, grid.wp);
    let k = grid.c * grid.kh * grid.kw;
    let koff = grid.row_offsets();
    let q = grid.q();
    let mr = isa.mr();
    let nv = strip_vectors(q, isa.lanes(), isa.max_nv());
    let nt = isa.lanes() * nv;
    let strip_end = q.next_multiple_of(nt);
    let kc_len = k_block(k);
    let blocks = co.div_ceil(mr);
    // Split the output channels of an image into groups when the batch alone cannot keep
    // every thread busy.
    let threads = rayon::current_num_threads().max(1);
    let groups = if n >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(n).min(blocks)
    };
    let per_group = blocks.div_ceil(groups);
    let group_len = per_group * mr;
    let img_out = co * oh * ow;
    let mut y = super::buf::uninit(n * img_out);
    if y.is_empty() {
        return Vec::new();
    }
    let items: Vec<(usize, usize)> = (0..n)
        .flat_map(|img| (0..groups).map(move |gi| (img, gi)))
        .filter(|&(_, gi)| gi * per_group < blocks)
        .collect();
    // Each work item owns the contiguous output channels [o0, o1) of one image.
    let mut slices: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = Vec::with_capacity(items.len());
    {
        let mut rest: &mut [MaybeUninit<f32>] = &mut y;
        for &(img, gi) in &items {
            let o0 = gi * group_len;
            let o1 = (o0 + group_len).min(co);
            let (head, tail) = rest.split_at_mut((o1 - o0) * oh * ow);
            slices.push((img, o0, head));
            rest = tail;
        }
    }
    let xp = Ptr(xpad.as_ptr());
    let plane_img = grid.c * grid.plane;
    slices.into_par_iter().for_each_init(
        || vec![0f32; group_len * strip_end],
        |acc, (img, o0, out)| {
            let cb0 = o0 / mr;
            let cb1 = (cb0 + per_group).min(blocks);
            let xb = xp;
            for k0 in (0..k).step_by(kc_len) {
                let kc = kc_len.min(k - k0);
                for q0 in (0..q).step_by(nt) {
                    for cb in cb0..cb1 {
                        let c_tile = &mut acc[(cb - cb0) * mr * strip_end + q0..];
                        let (ap, kp) = (a[(cb * k + k0) * mr..].as_ptr(), koff[k0..].as_ptr());
                        let (bp, cp) =
                            (xb.0.wrapping_add(img * plane_img + q0), c_tile.as_mut_ptr());
                        // SAFETY: `isa` is this CPU's (`isa()`); the strip reads rows
                        // `koff[k] + img·plane_img + q0 .. + nt`, inside `xpad` by the plane's
                        // slack (nt ≤ NT); `c_tile` holds mr rows of stride `strip_end` from
                        // q0 + nt; `a` holds kc·mr floats of the block from k0.
                        unsafe { fwd_strip(isa, nv, kc, ap, kp, bp, cp, strip_end, k0 > 0) };
                    }
                }
            }
            // Drop the grid's extra columns; add the bias, shift or residual.
            for (oc, dst) in out.chunks_exact_mut(oh * ow).enumerate() {
                let o = o0 + oc;
                let src = &acc[oc * strip_end..];
                let b = bias.map_or(0.0, |b| add.offset(b, co, img, o));
                let res = match add {
                    Add::Residual(r) => Some(&r[(img * co + o) * oh * ow..][..oh * ow]),
                    _ => None,
                };
                for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                    let s = &src[oy * wp..oy * wp + ow];
                    match res {
                        Some(r) => {
                            for ((d, &s), &r) in row.iter_mut().zip(s).zip(&r[oy * ow..]) {
                                d.write(s + b + r);
                            }
                        }
                        None => {
                            for (d, &s) in row.iter_mut().zip(s) {
                                d.write(s + b);
                            }
                        }
                    }
                }
            }
        },
    );
    // SAFETY: the items' slices partition `y`, and each item wrote every row of each of its
    // channels (`ow` floats per output row).
    unsafe { super::buf::assume_init(y) }
}

/// The forward micro-kernel of `isa` on a strip of `nv` vectors (1 ≤ nv ≤ `isa.max_nv()`):
/// `c[r][..] (+)= Σ_{k<kc} a[k][r] · b[koff[k] ..]` for the `mr` rows of one weight block.
///
/// # Safety
///
/// `isa` must be this CPU's, and the pointers must satisfy [`fwd_tile`]'s (AVX-512) or
/// [`fwd_tile_avx2`]'s contract for a strip of `nv · isa.lanes()` positions.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn fwd_strip(
    isa: Isa,
    nv: usize,
    kc: usize,
    a: *const f32,
    koff: *const usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512 => {
                let tile = match nv {
                    1 => fwd_tile::<1>,
                    2 => fwd_tile::<2>,
                    _ => fwd_tile::<3>,
                };
                tile(kc, a, koff, b, c, ldc, accumulate);
            }
            Isa::Avx2 => {
                let tile = match nv {
                    1 => fwd_tile_avx2::<1>,
                    _ => fwd_tile_avx2::<2>,
                };
                tile(kc, a, koff, b, c, ldc, accumulate);
            }
        }
    }
}

/// Rows of a K block of the forward kernel for a K of `k`: K is split into equal blocks of at
/// most [`KC_MAX`].
pub(crate) fn k_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC_MAX))
}

/// Vectors of `lanes` floats per strip (at most `max_nv`) for `q` grid positions: the fewest
/// positions computed, more vectors preferred on ties and 1 vector only when it saves more
/// than its lower FMA density costs.
fn strip_vectors(q: usize, lanes: usize, max_nv: usize) -> usize {
    let cost = |nv: usize| {
        let computed = q.next_multiple_of(lanes * nv) as f64;
        if nv == 1 { computed * 1.15 } else { computed }
    };
    (1..=max_nv)
        .rev()
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
        .unwrap_or(max_nv)
}

/// `c[r][0..16·NV] (+)= Σ_{k<kc} a[k][r] · b[koff[k] .. + 16·NV]` for r < MR.
///
/// # Safety
///
/// AVX-512F must be available; `a` holds `kc·MR` floats, `koff` `kc` offsets, `b + koff[k]`
/// `16·NV` readable floats for every k, and `c` MR rows of `16·NV` floats with row stride
/// `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn fwd_tile<const NV: usize>(
    kc: usize,
    a: *const f32,
    koff: *const usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    unsafe {
        let mut acc: [[__m512; NV]; MR] = [[_mm512_setzero_ps(); NV]; MR];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(c.add(r * ldc + 16 * v));
                }
            }
        }
        for kk in 0..kc {
            let bp = b.add(*koff.add(kk));
            let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(16 * v)));
            let ap = a.add(kk * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(r));
                for (x, &bx) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, bx, *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + 16 * v), *x);
            }
        }
    }
}

/// [`fwd_tile`] with AVX2 + FMA on weights packed in [`MR_AVX2`]-channel blocks:
/// `c[r][0..8·NV] (+)= Σ_{k<kc} a[k][r] · b[koff[k] .. + 8·NV]` for r < 6 (12 ymm
/// accumulators at NV = 2).
///
/// # Safety
///
/// AVX2 and FMA must be available; `a` holds `kc·6` floats, `koff` `kc` offsets, `b + koff[k]`
/// `8·NV` readable floats for every k, and `c` 6 rows of `8·NV` floats with row stride `ldc`.
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd_tile_avx2<const NV: usize>(
    kc: usize,
    a: *const f32,
    koff: *const usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    unsafe {
        let mut acc: [[__m256; NV]; MR_AVX2] = [[_mm256_setzero_ps(); NV]; MR_AVX2];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(c.add(r * ldc + 8 * v));
                }
            }
        }
        for kk in 0..kc {
            let bp = b.add(*koff.add(kk));
            let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
            let ap = a.add(kk * MR_AVX2);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*ap.add(r));
                for (x, &bx) in row.iter_mut().zip(&bv) {
                    *x = _mm256_fmadd_ps(av, bx, *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm256_storeu_ps(c.add(r * ldc + 8 * v), *x);
            }
        }
    }
}

/// Stride-1 convolution forward with bias (and `add`), `[n, co, oh, ow]`.
pub(crate) fn conv2d_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    conv2d_forward_with(this_isa(), g, x, w, bias, add)
}

/// [`conv2d_forward`] with the micro-kernels of `isa` (which the CPU must have).
pub(crate) fn conv2d_forward_with(
    isa: Isa,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    let grid = Grid::new(g.ci, g.h, g.w, g.kh, g.kw, g.pt, g.pl, g.oh, g.ow);
    let xpad = grid.pad(x, g.n);
    let a = pack_weights(w, g.co, g.k(), isa.mr());
    correlate(isa, &grid, g.n, g.co, &xpad, &a, Some(bias), add)
}

/// `dx` of a stride-1 convolution: the full correlation of `dy` with the flipped kernel,
/// `dx[c][y][x] = Σ_{o,i,j} W[o][c][i][j] · dy[o][y + pt − i][x + pl − j]`.
pub(crate) fn conv2d_input_grad(g: &ConvGeom, w: &[f32], dy: &[f32]) -> Vec<f32> {
    conv2d_input_grad_with(this_isa(), g, w, dy)
}

/// [`conv2d_input_grad`] with the micro-kernels of `isa` (which the CPU must have).
pub(crate) fn conv2d_input_grad_with(isa: Isa, g: &ConvGeom, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    // dy padded by kh − 1 − pt on top (kw − 1 − pl on the left), correlated with
    // W'[c][o][i][j] = W[o][c][kh − 1 − i][kw − 1 − j] to an h×w output.
    let grid = Grid::new(
        g.co,
        g.oh,
        g.ow,
        kh,
        kw,
        kh - 1 - g.pt,
        kw - 1 - g.pl,
        g.h,
        g.w,
    );
    let a = pack_flipped(g, w, isa.mr());
    let dypad = grid.pad(dy, g.n);
    correlate(isa, &grid, g.n, g.ci, &dypad, &a, None, Add::None)
}

/// `dW[o][(c,i,j)] = Σ_n Σ_{oy,ox} dy[n][o][oy][ox] · x[n][c][oy + i − pt][ox + j − pl]`.
pub(crate) fn conv2d_weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    conv2d_weight_grad_with(this_isa(), g, x, dy)
}

/// [`conv2d_weight_grad`] with the micro-kernels of `isa` (which the CPU must have).
pub(crate) fn conv2d_weight_grad_with(isa: Isa, g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let grid = Grid::new(g.ci, g.h, g.w, g.kh, g.kw, g.pt, g.pl, g.oh, g.ow);
    let (oh, ow, wp) = (g.oh, g.ow, grid.wp);
    let qlen = grid.q().next_multiple_of(16);
    let co_pad = g.co.next_multiple_of(WR);
    // dy on the grid (zero in the extra columns and the padding channels): [n][co_pad][qlen].
    let mut dyg = super::buf::zeroed(g.n * co_pad * qlen);
    dyg.par_chunks_mut(co_pad * qlen)
        .zip(dy.par_chunks(g.co * oh * ow))
        .for_each(|(dst, src)| {
            for (dc, sc) in dst.chunks_exact_mut(qlen).zip(src.chunks_exact(oh * ow)) {
                for (oy, row) in sc.chunks_exact(ow).enumerate() {
                    dc[oy * wp..oy * wp + ow].copy_from_slice(row);
                }
            }
        });
    let xpad = grid.pad(x, g.n);
    let sums = DwSums {
        co: g.co,
        units: g.n,
        qlen,
        dy: &dyg,
        dy_unit: co_pad * qlen,
        dy_ch: qlen,
        x: &xpad,
        x_unit: grid.c * grid.plane,
        koff: grid.row_offsets(),
    };
    sums.run(isa)
}

/// The weight gradient as sums of products of contiguous runs: `dW[o][k] = Σ_u Σ_{q<qlen}
/// dy[u·dy_unit + o·dy_ch + q] · x[u·x_unit + koff[k] + q]` over `units` units (the images of
/// [`conv2d_weight_grad`]'s grids, or the output rows of a batch-innermost grid), for `co`
/// output channels and K = `koff.len()` rows `(c, i, j)`.
pub(crate) struct DwSums<'a> {
    /// Output channels (rows of dW).
    pub(crate) co: usize,
    /// Units summed over.
    pub(crate) units: usize,
    /// Products per unit and (o, k): a multiple of 16 (and the length of every run).
    pub(crate) qlen: usize,
    /// dy, holding `co` rounded up to [`WR`] channels (the extra ones zero) per unit.
    pub(crate) dy: &'a [f32],
    /// Floats from one unit of `dy` to the next.
    pub(crate) dy_unit: usize,
    /// Floats from one output channel of `dy` to the next.
    pub(crate) dy_ch: usize,
    /// The input runs.
    pub(crate) x: &'a [f32],
    /// Floats from one unit of `x` to the next.
    pub(crate) x_unit: usize,
    /// Offset of row k's run from a unit's start in `x`.
    pub(crate) koff: Vec<usize>,
}

impl DwSums<'_> {
    /// `dW`, `[co][K]`, with the micro-kernels of `isa` (this CPU's).
    pub(crate) fn run(mut self, isa: Isa) -> Vec<f32> {
        let (co, qlen) = (self.co, self.qlen);
        let k = self.koff.len();
        let k_pad = k.next_multiple_of(WS);
        self.koff.resize(k_pad, 0);
        let koff = &self.koff;
        let co_pad = co.next_multiple_of(WR);
        // Every run read below lies inside its buffer (checked here, once, for the unsafe
        // pointer arithmetic of the micro-kernels).
        if self.units > 0 && co > 0 {
            let last = (self.units - 1) * self.dy_unit + (co_pad - 1) * self.dy_ch + qlen;
            assert!(last <= self.dy.len(), "dW sums: dy too short");
            let reach = koff.iter().max().copied().unwrap_or(0) + qlen;
            assert!(
                (self.units - 1) * self.x_unit + reach <= self.x.len(),
                "dW sums: x too short"
            );
        }
        assert_eq!(qlen % 16, 0, "dW sums: runs of {qlen} floats");
        let (xp, dp) = (Ptr(self.x.as_ptr()), Ptr(self.dy.as_ptr()));
        let (x_unit, dy_unit, dy_ch) = (self.x_unit, self.dy_unit, self.dy_ch);
        // Units per pass: a block's WR dy rows for `chunk` units (≤ 16 KiB) stay in L1 while
        // every tile of the block's row of dW passes over them.
        let units = self.units;
        let chunk = (4096 / (WR * qlen)).clamp(1, units.max(1));
        // Work items: (output block, range of tiles); blocks alone may be too few for the pool.
        let blocks = co_pad / WR;
        let tiles = k_pad / WS;
        let threads = rayon::current_num_threads().max(1);
        let parts = (2 * threads).div_ceil(blocks).min(tiles).max(1);
        let per_part = tiles.div_ceil(parts);
        let items: Vec<(usize, usize, usize)> = (0..blocks)
            .flat_map(|ob| {
                (0..parts).filter_map(move |p| {
                    let t0 = p * per_part;
                    (t0 < tiles).then(|| (ob, t0, (t0 + per_part).min(tiles)))
                })
            })
            .collect();
        let passes = units.div_ceil(chunk);
        // Every element of dW is written by exactly one item (its block's rows, its tiles'
        // columns), in the last pass over the units.
        let mut dw = vec![0f32; co * k];
        if units == 0 {
            return dw;
        }
        let dwp = super::buf::SharedMut::new(&mut dw);
        items.into_par_iter().for_each(|(ob, t0, t1)| {
            let (xp, dp) = (xp, dp);
            // 16-lane partial sums of every tile of the item between passes over the units;
            // with one pass, one tile's sums at a time.
            let mut part = vec![0f32; if passes > 1 { t1 - t0 } else { 1 } * WR * WS * 16];
            let rows = WR.min(co - ob * WR);
            for u0 in (0..units).step_by(chunk) {
                let us = chunk.min(units - u0);
                for t in t0..t1 {
                    let dyp = dp.0.wrapping_add(u0 * dy_unit + ob * WR * dy_ch);
                    let xpp = xp.0.wrapping_add(u0 * x_unit);
                    let offs = &koff[t * WS..(t + 1) * WS];
                    let at = if passes > 1 { t - t0 } else { 0 };
                    let acc = &mut part[at * WR * WS * 16..][..WR * WS * 16];
                    let lay = Runs {
                        n: us,
                        qlen,
                        dy_unit,
                        dy_ch,
                        x_unit,
                    };
                    // SAFETY: `isa` is this CPU's (`isa()`); rows `ob·WR + r` of units u0..
                    // of dy hold `qlen` floats and `x + koff[·]` `qlen` floats per unit (both
                    // checked above); `acc` holds WR·WS·16 floats.
                    unsafe {
                        match isa {
                            Isa::Avx512 => dw_tile(lay, dyp, xpp, offs, acc.as_mut_ptr(), u0 > 0),
                            Isa::Avx2 => {
                                for r0 in (0..WR).step_by(WR_AVX2) {
                                    dw_tile_avx2(
                                        lay,
                                        dyp.add(r0 * dy_ch),
                                        xpp,
                                        offs,
                                        acc.as_mut_ptr().add(r0 * WS * 16),
                                        u0 > 0,
                                    );
                                }
                            }
                        }
                    }
                    if u0 + us == units {
                        // The lanes' sums go straight to dW, dropping padding rows and columns.
                        let cols = WS.min(k - t * WS);
                        for r in 0..rows {
                            // SAFETY: row `ob·WR + r < co`, columns `t·WS .. t·WS + cols ≤ k`
                            // of dW, which no other item writes; the buffer outlives the loop.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(
                                    dwp.at((ob * WR + r) * k + t * WS),
                                    cols,
                                )
                            };
                            for (s, d) in dst.iter_mut().enumerate() {
                                *d = sum_lanes(isa, &acc[(r * WS + s) * 16..][..16]);
                            }
                        }
                    }
                }
            }
        });
        dw
    }
}

/// The strides of one dW micro-kernel call: `n` units of `qlen` products, unit strides
/// `dy_unit` and `x_unit`, output-channel stride `dy_ch` in dy.
#[derive(Clone, Copy)]
struct Runs {
    n: usize,
    qlen: usize,
    dy_unit: usize,
    dy_ch: usize,
    x_unit: usize,
}

/// The sum of a dW kernel's lanes (16 with AVX-512; the AVX2 kernels fill the first 8).
fn sum_lanes(isa: Isa, lanes: &[f32]) -> f32 {
    match isa {
        // SAFETY: `isa` is this CPU's; `lanes` holds 16 floats.
        Isa::Avx512 => unsafe { sum16(lanes) },
        Isa::Avx2 => {
            let l = &lanes[..8];
            ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
        }
    }
}

/// `Σ lanes[0..16]` in one vector reduction.
///
/// # Safety
///
/// AVX-512F must be available; `lanes` holds at least 16 floats.
#[target_feature(enable = "avx512f")]
unsafe fn sum16(lanes: &[f32]) -> f32 {
    debug_assert!(lanes.len() >= 16);
    unsafe { _mm512_reduce_add_ps(_mm512_loadu_ps(lanes.as_ptr())) }
}

/// `acc[r][s] (+)= Σ_img Σ_{q<qlen} dy[img][r][q] · x[img][koff[s] + q]` in 16 lanes
/// (`acc` is `[WR][WS][16]`; its old values are kept if `accumulate`).
///
/// # Safety
///
/// AVX-512F must be available; for every `img < n`, `dy + img·dy_img + r·dy_ch` holds `qlen`
/// floats for r < WR and `x + img·x_img + koff[s]` `qlen` floats for s < WS; `qlen` is a
/// multiple of 16; `acc` holds `WR·WS·16` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn dw_tile(
    lay: Runs,
    dy: *const f32,
    x: *const f32,
    koff: &[usize],
    acc_out: *mut f32,
    accumulate: bool,
) {
    let Runs {
        n,
        qlen,
        dy_unit: dy_img,
        dy_ch,
        x_unit: x_img,
    } = lay;
    unsafe {
        let mut acc: [[__m512; WS]; WR] = [[_mm512_setzero_ps(); WS]; WR];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (s, a) in row.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(acc_out.add((r * WS + s) * 16));
                }
            }
        }
        let off: [usize; WS] = std::array::from_fn(|s| koff[s]);
        for img in 0..n {
            let d = dy.add(img * dy_img);
            let xb = x.add(img * x_img);
            for q in (0..qlen).step_by(16) {
                let dv: [__m512; WR] =
                    std::array::from_fn(|r| _mm512_loadu_ps(d.add(r * dy_ch + q)));
                for s in 0..WS {
                    let xv = _mm512_loadu_ps(xb.add(off[s] + q));
                    for r in 0..WR {
                        acc[r][s] = _mm512_fmadd_ps(dv[r], xv, acc[r][s]);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (s, a) in row.iter().enumerate() {
                _mm512_storeu_ps(acc_out.add((r * WS + s) * 16), *a);
            }
        }
    }
}

/// [`dw_tile`] with AVX2 + FMA for 2 output channels:
/// `acc[r][s][0..8] (+)= Σ_img Σ_{q<qlen} dy[img][r][q] · x[img][koff[s] + q]` in 8 lanes for
/// r < 2 (`acc` keeps [`dw_tile`]'s `[r][s][16]` layout; lanes 8..16 are not touched).
///
/// # Safety
///
/// AVX2 and FMA must be available; for every `img < n`, `dy + img·dy_img + r·dy_ch` holds `qlen`
/// floats for r < 2 and `x + img·x_img + koff[s]` `qlen` floats for s < WS; `qlen` is a
/// multiple of 8; `acc` holds `2·WS·16` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_tile_avx2(
    lay: Runs,
    dy: *const f32,
    x: *const f32,
    koff: &[usize],
    acc_out: *mut f32,
    accumulate: bool,
) {
    let Runs {
        n,
        qlen,
        dy_unit: dy_img,
        dy_ch,
        x_unit: x_img,
    } = lay;
    unsafe {
        let mut acc: [[__m256; WS]; WR_AVX2] = [[_mm256_setzero_ps(); WS]; WR_AVX2];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (s, a) in row.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(acc_out.add((r * WS + s) * 16));
                }
            }
        }
        let off: [usize; WS] = std::array::from_fn(|s| koff[s]);
        for img in 0..n {
            let d = dy.add(img * dy_img);
            let xb = x.add(img * x_img);
            for q in (0..qlen).step_by(8) {
                let dv: [__m256; WR_AVX2] =
                    std::array::from_fn(|r| _mm256_loadu_ps(d.add(r * dy_ch + q)));
                for s in 0..WS {
                    let xv = _mm256_loadu_ps(xb.add(off[s] + q));
                    for r in 0..WR_AVX2 {
                        acc[r][s] = _mm256_fmadd_ps(dv[r], xv, acc[r][s]);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (s, a) in row.iter().enumerate() {
                _mm256_storeu_ps(acc_out.add((r * WS + s) * 16), *a);
            }
        }
    }
}
