//! Stride-1 convolutions as an implicit GEMM with AVX-512 micro-kernels (x86-64 only; the
//! caller falls back to im2col + gemm where AVX-512 is missing).
//!
//! Zero-pad each input channel into a plane of width `wp = ow + kw − 1` (the *grid*). Output
//! position `q = oy·wp + ox` of a stride-1 correlation reads tap (i, j) of channel c at
//! `c·plane + i·wp + j + q`: every row `(c, i, j)` of the im2col matrix is the padded plane
//! shifted by a constant. The micro-kernels read those rows in place, so nothing the size of
//! im2col (kh·kw times the input) is written, and gemm's operand packing disappears too. Each
//! grid row holds `kw − 1` extra positions past `ow`; they are computed and dropped.
//!
//! - forward: `y = W·X` on the grid, 8 output channels × 48 positions per micro-kernel (24
//!   zmm accumulators); K = ci·kh·kw is blocked by 128 so the 48-position strip of the
//!   shifted rows stays in L1 while every 8-channel block of W passes over it;
//! - dx: the same kernel on the zero-padded dy with the flipped, transposed weights (the
//!   adjoint of a stride-1 correlation is the full correlation with the flipped kernel);
//! - dW: `dW[o][(c,i,j)] = Σ_n Σ_q dy_grid[o][q] · xpad[c][q + i·wp + j]`, 4 output channels
//!   × 6 rows `(c, i, j)` per micro-kernel, accumulated along q in 16 lanes, a few images at
//!   a time (so the 4 dy rows stay in L1 while all rows (c, i, j) pass), and reduced once.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use rayon::prelude::*;

use super::conv::{Add, ConvGeom};

/// Output channels per forward micro-kernel.
const MR: usize = 8;
/// Most zmm vectors of grid positions per forward micro-kernel (1, 2 or 3 are used).
const NV_MAX: usize = 3;
/// Most grid positions per forward micro-kernel.
const NT: usize = 16 * NV_MAX;
/// Largest K block of the forward kernel (K is split into equal blocks no larger): 160 rows
/// of a 48-position strip are 30 KiB, which stay in L1 while every block of W passes.
const KC_MAX: usize = 160;
/// Output channels per dW micro-kernel.
const WR: usize = 4;
/// Rows `(c, i, j)` per dW micro-kernel.
const WS: usize = 6;

/// Whether this CPU runs the AVX-512 kernels (checked once; `is_x86_feature_detected!`
/// caches the answer).
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Whether the direct kernels serve `g`: an AVX-512 CPU, stride 1, a kernel larger than 1×1
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
        let mut off = Vec::with_capacity(self.c * self.kh * self.kw);
        for c in 0..self.c {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    off.push(c * self.plane + i * self.wp + j);
                }
            }
        }
        off
    }

    /// `n` images `[n][c][h][w]` copied into zeroed grids `[n][c][plane]`.
    fn pad(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * self.c * self.plane];
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

/// Pointer wrapper for the micro-kernels' raw reads (shared across rayon workers).
#[derive(Clone, Copy)]
struct Ptr(*const f32);
// SAFETY: only ever read through, from slices that outlive the parallel loops.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

/// `a[cb][k][r] = w[cb·MR + r][k]` (0 past `co`): the weights in 8-channel blocks, k-major.
fn pack_weights(w: &[f32], co: usize, k: usize) -> Vec<f32> {
    let blocks = co.div_ceil(MR);
    let mut a = vec![0f32; blocks * k * MR];
    for (o, row) in w.chunks_exact(k).enumerate().take(co) {
        let (cb, r) = (o / MR, o % MR);
        let block = &mut a[cb * k * MR..][..k * MR];
        for (kk, &v) in row.iter().enumerate() {
            block[kk * MR + r] = v;
        }
    }
    a
}

/// The correlation of the padded images `xpad` (`[n][grid.c][plane]`) with the packed
/// weights `a` (`co` outputs): `y[n][o][oy][ox] = bias[o] + Σ_k W[o][k]·row_k[oy·wp + ox]`.
fn correlate(
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
    let nv = strip_vectors(q);
    let nt = 16 * nv;
    let strip_end = q.next_multiple_of(nt);
    let kc_len = k.div_ceil(k.div_ceil(KC_MAX));
    let blocks = co.div_ceil(MR);
    // Split the output channels of an image into groups when the batch alone cannot keep
    // every thread busy.
    let threads = rayon::current_num_threads().max(1);
    let groups = if n >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(n).min(blocks)
    };
    let per_group = blocks.div_ceil(groups);
    let group_len = per_group * MR;
    let img_out = co * oh * ow;
    let mut y = vec![0f32; n * img_out];
    if y.is_empty() {
        return y;
    }
    let items: Vec<(usize, usize)> = (0..n)
        .flat_map(|img| (0..groups).map(move |gi| (img, gi)))
        .filter(|&(_, gi)| gi * per_group < blocks)
        .collect();
    // Each work item owns the contiguous output channels [o0, o1) of one image.
    let mut slices: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(items.len());
    {
        let mut rest: &mut [f32] = &mut y;
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
            let cb0 = o0 / MR;
            let cb1 = (cb0 + per_group).min(blocks);
            let xb = xp;
            for k0 in (0..k).step_by(kc_len) {
                let kc = kc_len.min(k - k0);
                for q0 in (0..q).step_by(nt) {
                    for cb in cb0..cb1 {
                        let c_tile = &mut acc[(cb - cb0) * MR * strip_end + q0..];
                        let tile = match nv {
                            1 => fwd_tile::<1>,
                            2 => fwd_tile::<2>,
                            _ => fwd_tile::<3>,
                        };
                        // SAFETY: AVX-512 is present (`applies`); the strip reads rows
                        // `koff[k] + img·plane_img + q0 .. + nt`, inside `xpad` by the plane's
                        // slack; `c_tile` holds MR rows of stride `strip_end` from q0 + nt.
                        unsafe {
                            tile(
                                kc,
                                a[(cb * k + k0) * MR..].as_ptr(),
                                koff[k0..].as_ptr(),
                                xb.0.add(img * plane_img + q0),
                                c_tile.as_mut_ptr(),
                                strip_end,
                                k0 > 0,
                            );
                        }
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
                                *d = s + b + r;
                            }
                        }
                        None => {
                            for (d, &s) in row.iter_mut().zip(s) {
                                *d = s + b;
                            }
                        }
                    }
                }
            }
        },
    );
    y
}

/// zmm vectors per strip for `q` grid positions: the fewest positions computed, 3 vectors
/// preferred on ties and 1 vector only when it saves more than its lower FMA density costs.
fn strip_vectors(q: usize) -> usize {
    let cost = |nv: usize| {
        let computed = q.next_multiple_of(16 * nv) as f64;
        if nv == 1 { computed * 1.15 } else { computed }
    };
    [3, 2, 1]
        .into_iter()
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
        .unwrap_or(NV_MAX)
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

/// Stride-1 convolution forward with bias (and `add`), `[n, co, oh, ow]`.
pub(crate) fn conv2d_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    let grid = Grid::new(g.ci, g.h, g.w, g.kh, g.kw, g.pt, g.pl, g.oh, g.ow);
    let xpad = grid.pad(x, g.n);
    let a = pack_weights(w, g.co, g.k());
    correlate(&grid, g.n, g.co, &xpad, &a, Some(bias), add)
}

/// `dx` of a stride-1 convolution: the full correlation of `dy` with the flipped kernel,
/// `dx[c][y][x] = Σ_{o,i,j} W[o][c][i][j] · dy[o][y + pt − i][x + pl − j]`.
pub(crate) fn conv2d_input_grad(g: &ConvGeom, w: &[f32], dy: &[f32]) -> Vec<f32> {
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
    let taps = kh * kw;
    let mut wt = vec![0f32; g.ci * g.co * taps];
    for o in 0..g.co {
        for c in 0..g.ci {
            let src = &w[(o * g.ci + c) * taps..][..taps];
            let dst = &mut wt[(c * g.co + o) * taps..][..taps];
            for (t, d) in dst.iter_mut().enumerate() {
                *d = src[taps - 1 - t];
            }
        }
    }
    let dypad = grid.pad(dy, g.n);
    let a = pack_weights(&wt, g.ci, g.co * taps);
    correlate(&grid, g.n, g.ci, &dypad, &a, None, Add::None)
}

/// `dW[o][(c,i,j)] = Σ_n Σ_{oy,ox} dy[n][o][oy][ox] · x[n][c][oy + i − pt][ox + j − pl]`.
pub(crate) fn conv2d_weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let grid = Grid::new(g.ci, g.h, g.w, g.kh, g.kw, g.pt, g.pl, g.oh, g.ow);
    let (oh, ow, wp) = (g.oh, g.ow, grid.wp);
    let k = g.k();
    let qlen = grid.q().next_multiple_of(16);
    let co_pad = g.co.next_multiple_of(WR);
    // dy on the grid (zero in the extra columns and the padding channels): [n][co_pad][qlen].
    let mut dyg = vec![0f32; g.n * co_pad * qlen];
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
    let mut koff = grid.row_offsets();
    let k_pad = k.next_multiple_of(WS);
    koff.resize(k_pad, 0);
    let (xp, dp) = (Ptr(xpad.as_ptr()), Ptr(dyg.as_ptr()));
    let (x_img, dy_img) = (grid.c * grid.plane, co_pad * qlen);
    // Images per pass: a block's WR dy rows for `chunk` images (≤ 16 KiB) stay in L1 while
    // every tile of the block's row of dW passes over them.
    let chunk = (4096 / (WR * qlen)).clamp(1, g.n.max(1));
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
    let results: Vec<(usize, usize, Vec<f32>)> = items
        .into_par_iter()
        .map(|(ob, t0, t1)| {
            let (xp, dp) = (xp, dp);
            // 16-lane partial sums of every tile of the item, reduced once at the end.
            let mut part = vec![0f32; (t1 - t0) * WR * WS * 16];
            for img0 in (0..g.n).step_by(chunk) {
                let imgs = chunk.min(g.n - img0);
                for (t, acc) in (t0..t1).zip(part.chunks_exact_mut(WR * WS * 16)) {
                    // SAFETY: AVX-512 is present (`applies`); rows `ob·WR + r` of images
                    // img0.. of the dy grid hold `qlen` floats; `xpad + koff[·]` reads `qlen`
                    // floats per image inside the plane's slack; `acc` holds WR·WS·16 floats.
                    unsafe {
                        dw_tile(
                            imgs,
                            qlen,
                            dp.0.add(img0 * dy_img + ob * WR * qlen),
                            dy_img,
                            xp.0.add(img0 * x_img),
                            x_img,
                            &koff[t * WS..(t + 1) * WS],
                            acc.as_mut_ptr(),
                            img0 > 0,
                        );
                    }
                }
            }
            let sums = part
                .chunks_exact(16)
                .map(|lanes| lanes.iter().sum())
                .collect();
            (ob, t0, sums)
        })
        .collect();
    // Lay the tiles out as dW[o][k], dropping the padding rows and columns.
    let mut dw = vec![0f32; g.co * k];
    for (ob, t0, sums) in results {
        for (ti, tile) in sums.chunks_exact(WR * WS).enumerate() {
            for r in 0..WR {
                let o = ob * WR + r;
                if o >= g.co {
                    break;
                }
                for s in 0..WS {
                    let kk = (t0 + ti) * WS + s;
                    if kk < k {
                        dw[o * k + kk] = tile[r * WS + s];
                    }
                }
            }
        }
    }
    dw
}

/// `acc[r][s] (+)= Σ_img Σ_{q<qlen} dy[img][r][q] · x[img][koff[s] + q]` in 16 lanes
/// (`acc` is `[WR][WS][16]`; its old values are kept if `accumulate`).
///
/// # Safety
///
/// AVX-512F must be available; for every `img < n`, `dy + img·dy_img + r·qlen` holds `qlen`
/// floats for r < WR and `x + img·x_img + koff[s]` `qlen` floats for s < WS; `qlen` is a
/// multiple of 16; `acc` holds `WR·WS·16` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn dw_tile(
    n: usize,
    qlen: usize,
    dy: *const f32,
    dy_img: usize,
    x: *const f32,
    x_img: usize,
    koff: &[usize],
    acc_out: *mut f32,
    accumulate: bool,
) {
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
                    std::array::from_fn(|r| _mm512_loadu_ps(d.add(r * qlen + q)));
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
