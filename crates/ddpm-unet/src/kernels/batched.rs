//! Stride-1 convolutions of large batches with the batch innermost: the direct kernels'
//! micro-kernels ([`super::direct`]) on a zero-padded grid `[c][hp][wp][n]` instead of one
//! padded plane per image.
//!
//! On the per-image grid an output row of `ow` positions sits in a grid row of
//! `wp = ow + kw − 1`, and a strip of 16–48 consecutive grid positions runs across rows, so
//! every row computes `kw − 1` positions that are dropped, and the last strip of an image is
//! rounded up: 64 positions computed for a 7×7 map's 49 (31% wasted), 224 for 14×14's 196
//! (14%). With the batch innermost, output row `oy` of every image is one contiguous run of
//! `ow·n` grid floats (position `(ox, img)` at `ox·n + img`), and tap `(i, j)` of channel
//! `c` shifts it by `c·plane + (i·wp + j)·n`, so the strips cover exactly the output: nothing
//! is computed and dropped when `n` is a multiple of the vector width.
//!
//! The input (and, for the input gradient, dy) is transposed into the grid in the pass that
//! pads it anyway, and the kernel's output rows are transposed back to NCHW in the pass that
//! adds the bias. The weight gradient sums over output rows instead of images
//! ([`super::direct::DwSums`]), reading dy from the interior of the input gradient's padded
//! dy grid (one transpose of dy serves both).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{Add, ConvGeom};
use super::direct::{self, DwSums, Isa};

/// Batches that are not a multiple of this keep the per-image grid: a row's run of `ow·n`
/// floats splits into whole vectors (16 floats with AVX-512) only when `n` is a multiple of
/// 16.
pub(crate) const BATCH_MULTIPLE: usize = 16;

/// Whether the batch-innermost kernels serve `g`: the direct kernels do, both channel counts
/// are non-zero and the batch is a non-zero multiple of [`BATCH_MULTIPLE`].
pub(crate) fn applies(g: &ConvGeom) -> bool {
    g.n > 0 && g.n.is_multiple_of(BATCH_MULTIPLE) && g.ci > 0 && g.co > 0 && direct::applies(g)
}

/// The zero-padded grid `[c][hp][wp][n]` of `c` channels of `n` images `h×w`, padded by
/// `pt` on top and `pl` on the left for an `oh×ow` output of a `kh×kw` correlation.
#[derive(Clone, Copy, Debug)]
struct Grid {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
    /// Grid rows: `oh + kh − 1`.
    hp: usize,
    /// Grid columns: `ow + kw − 1`.
    wp: usize,
}

impl Grid {
    #[allow(clippy::too_many_arguments)]
    fn new(
        n: usize,
        c: usize,
        [h, w]: [usize; 2],
        [kh, kw]: [usize; 2],
        [pt, pl]: [usize; 2],
        [oh, ow]: [usize; 2],
    ) -> Self {
        Self {
            n,
            c,
            h,
            w,
            kh,
            kw,
            pt,
            pl,
            oh,
            ow,
            hp: oh + kh - 1,
            wp: ow + kw - 1,
        }
    }

    /// Floats per channel.
    fn plane(&self) -> usize {
        self.hp * self.wp * self.n
    }

    /// Offsets of the rows `(c, i, j)` (in im2col order) from a position's float.
    fn row_offsets(&self) -> Vec<usize> {
        direct::tap_offsets(self.c, [self.kh, self.kw], self.plane(), self.wp, self.n)
    }

    /// `x` (`[n][c][h][w]`) transposed into the grid, with `c_alloc ≥ c` channels (the extra
    /// ones zero). Parallel over channels; each channel's padding is zeroed and its input row
    /// `iy` of the `n` images (an `n × w` matrix with row stride `c·h·w`) transposed into its
    /// grid run, so every float is written once.
    fn fill(&self, x: &[f32], c_alloc: usize) -> Vec<f32> {
        let plane = self.plane();
        let mut out = super::buf::uninit(c_alloc * plane);
        let (n, c, h, w) = (self.n, self.c, self.h, self.w);
        let (pt, pl, wp) = (self.pt, self.pl, self.wp);
        assert!(x.len() >= n * c * h * w, "batched grid: input too short");
        assert_eq!(n % 8, 0, "batched grid: batch {n} not a multiple of 8");
        let zero = |d: &mut [MaybeUninit<f32>]| d.fill(MaybeUninit::new(0.0));
        out.par_chunks_mut(plane).enumerate().for_each(|(ch, dst)| {
            if ch >= c {
                zero(dst);
                return;
            }
            // The padding: rows above and below the image, columns left and right of it.
            zero(&mut dst[..pt * wp * n]);
            for iy in 0..h {
                let row = (iy + pt) * wp * n;
                zero(&mut dst[row..row + pl * n]);
                zero(&mut dst[row + (pl + w) * n..row + wp * n]);
            }
            zero(&mut dst[(pt + h) * wp * n..]);
            // The image: eight images at a time, so the reads are eight sequential
            // streams (the channel's grid, written in 32-byte pieces, stays in cache).
            for img0 in (0..n).step_by(8) {
                for iy in 0..h {
                    let at = ((iy + pt) * wp + pl) * n + img0;
                    let src = &x[((img0 * c + ch) * h + iy) * w..];
                    // SAFETY: rows `i < 8` of the source start at `i·c·h·w` within `src`
                    // (x holds n·c·h·w floats, img0 + 8 ≤ n) and hold `w` floats;
                    // destination row `ix < w` starts at `at + ix·n`, with room for 8
                    // floats inside the channel's grid.
                    unsafe {
                        let dst = dst[at..].as_mut_ptr().cast();
                        transpose(src.as_ptr(), c * h * w, dst, n, 8, w)
                    };
                }
            }
        });
        // SAFETY: in each channel below `c` the padding rows and columns were zeroed and every
        // interior position (iy, ix) got the floats of all `n` images (blocks of 8 images,
        // n a multiple of 8), which covers the plane (`hp·wp·n` floats); the other channels
        // were zeroed.
        unsafe { super::buf::assume_init(out) }
    }
}

/// `dst[j·ds + i] = src[i·ss + j]` for `i < rows`, `j < cols`: a `rows × cols` matrix with row
/// stride `ss` transposed into one with row stride `ds`, in 8×8 AVX2 blocks (every CPU the
/// direct kernels run on has AVX2). Edge blocks load through masks but store whole vectors
/// (masked stores are microcoded on AMD's cores): destination rows are written up to `rows`
/// rounded up to 8, the extra floats being garbage.
///
/// # Safety
///
/// `src + i·ss` must hold `cols` readable floats for every `i < rows`, `dst + j·ds`
/// `rows.next_multiple_of(8)` writable floats for every `j < cols`, and the two must not
/// overlap.
unsafe fn transpose(
    src: *const f32,
    ss: usize,
    dst: *mut f32,
    ds: usize,
    rows: usize,
    cols: usize,
) {
    debug_assert!(std::is_x86_feature_detected!("avx2"));
    for i in (0..rows).step_by(8) {
        for j in (0..cols).step_by(8) {
            // SAFETY: the block's rows `i.. i + nr ≤ rows` and columns `j .. j + nc ≤ cols`
            // lie inside both matrices; AVX2 is present wherever this module runs.
            unsafe {
                transpose8(
                    src.add(i * ss + j),
                    ss,
                    dst.add(j * ds + i),
                    ds,
                    (rows - i).min(8),
                    (cols - j).min(8),
                )
            };
        }
    }
}

/// One block of [`transpose`]: `dst[c·ds + r] = src[r·ss + c]` for `r < nr`, `c < nc`
/// (both ≤ 8; `dst[c·ds + r]` for `nr ≤ r < 8` is overwritten with zeros).
///
/// # Safety
///
/// AVX2 must be available; `src + r·ss` must hold `nc` floats for r < nr, and `dst + c·ds`
/// 8 floats for c < nc.
#[target_feature(enable = "avx2")]
unsafe fn transpose8(src: *const f32, ss: usize, dst: *mut f32, ds: usize, nr: usize, nc: usize) {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_ps, _mm256_maskload_ps, _mm256_permute2f128_ps, _mm256_setr_epi32,
        _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps,
        _mm256_unpacklo_ps,
    };
    // Lanes `< len` set: a mask for the first `len` floats of a row.
    let mask = |len: usize| -> __m256i {
        let l = len as i32;
        let on = |i: i32| if i < l { -1 } else { 0 };
        _mm256_setr_epi32(on(0), on(1), on(2), on(3), on(4), on(5), on(6), on(7))
    };
    let cols = mask(nc);
    unsafe {
        let r: [_; 8] = std::array::from_fn(|i| {
            if i < nr && nc == 8 {
                _mm256_loadu_ps(src.add(i * ss))
            } else if i < nr {
                _mm256_maskload_ps(src.add(i * ss), cols)
            } else {
                _mm256_setzero_ps()
            }
        });
        // Pairs of rows interleaved, then pairs of pairs: each 128-bit half then holds four
        // consecutive elements of one output row.
        let t: [_; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        let u: [_; 8] = std::array::from_fn(|i| {
            // u[4q + m]: from t[4q + m/2] and t[4q + 2 + m/2], their low (m even) or high pairs.
            let (q, m) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + m / 2], t[4 * q + 2 + m / 2]);
            if m % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(a, b)
            } else {
                _mm256_shuffle_ps::<0xEE>(a, b)
            }
        });
        for j in 0..8 {
            let (a, b) = (u[j % 4], u[4 + j % 4]);
            let v = if j < 4 {
                _mm256_permute2f128_ps::<0x20>(a, b)
            } else {
                _mm256_permute2f128_ps::<0x31>(a, b)
            };
            if j < nc {
                _mm256_storeu_ps(dst.add(j * ds), v);
            }
        }
    }
}

/// The correlation of the grid `xt` with the packed weights `a` (`co` outputs) in NCHW:
/// `y[img][o][oy][ox] = bias[o] + Σ_k W[o][k]·xt[oy·wp·n + ox·n + img + koff[k]]` (+ `add`).
#[allow(clippy::too_many_arguments)]
fn correlate(
    isa: Isa,
    grid: &Grid,
    co: usize,
    xt: &[f32],
    a: &[f32],
    bias: Option<&[f32]>,
    add: Add<'_>,
) -> Vec<f32> {
    let (n, oh, ow, wp) = (grid.n, grid.oh, grid.ow, grid.wp);
    let k = grid.c * grid.kh * grid.kw;
    let koff = grid.row_offsets();
    let kc_len = direct::k_block(k);
    let mr = isa.mr();
    let lanes = isa.lanes();
    let blocks = co.div_ceil(mr);
    let run = ow * n;
    // Work items: (output row, group of output-channel blocks), enough for the pool.
    let threads = rayon::current_num_threads().max(1);
    let groups = (2 * threads).div_ceil(oh).clamp(1, blocks.max(1));
    let per_group = blocks.div_ceil(groups);
    let group_len = per_group * mr;
    let mut y = super::buf::uninit(n * co * oh * ow);
    if y.is_empty() {
        return Vec::new();
    }
    // The strips' reads end inside the grid: a row's run ends `(kw − 1)·n` floats before its
    // grid row does and the last row's taps reach row `oh − 1 + kh − 1 = hp − 1`.
    assert!(
        xt.len() >= grid.c * grid.plane(),
        "batched correlate: grid too short"
    );
    assert_eq!(
        run % lanes,
        0,
        "batched correlate: batch {n} not a multiple of {lanes}"
    );
    let items: Vec<(usize, usize)> = (0..oh)
        .flat_map(|oy| (0..groups).map(move |gi| (oy, gi)))
        .filter(|&(_, gi)| gi * per_group < blocks)
        .collect();
    let yp = super::buf::SharedMut::new_uninit(&mut y);
    items.into_par_iter().for_each_init(
        || {
            (
                vec![0f32; group_len * run],
                vec![0f32; n * ow.next_multiple_of(8)],
            )
        },
        |(acc, tr), (oy, gi)| {
            let cb0 = gi * per_group;
            let cb1 = (cb0 + per_group).min(blocks);
            let row = xt.as_ptr().wrapping_add(oy * wp * n);
            for k0 in (0..k).step_by(kc_len) {
                let kc = kc_len.min(k - k0);
                let mut s0 = 0;
                while s0 < run {
                    let nv = ((run - s0) / lanes).min(isa.max_nv());
                    for cb in cb0..cb1 {
                        let c_tile = &mut acc[(cb - cb0) * mr * run + s0..];
                        let (ap, kp) = (a[(cb * k + k0) * mr..].as_ptr(), koff[k0..].as_ptr());
                        // SAFETY: `isa` is this CPU's; the strip reads `nv·lanes` floats from
                        // `row + s0 + koff[k]`, inside the grid (asserted above: s0 + nv·lanes
                        // ≤ ow·n and the taps stay within the grid's rows and columns);
                        // `c_tile` holds mr rows of stride `run` from s0 + nv·lanes; `a` holds
                        // kc·mr floats of the block from k0.
                        unsafe {
                            direct::fwd_strip(
                                isa,
                                nv,
                                kc,
                                ap,
                                kp,
                                row.wrapping_add(s0),
                                c_tile.as_mut_ptr(),
                                run,
                                k0 > 0,
                            )
                        };
                    }
                    s0 += nv * lanes;
                }
            }
            // Transpose the row back to `[img][ox]` (rows padded to whole vectors), then
            // write it to NCHW adding the bias, shift or residual.
            let ow8 = ow.next_multiple_of(8);
            for oc in 0..group_len.min(co - cb0 * mr) {
                let o = cb0 * mr + oc;
                let src = &acc[oc * run..][..run];
                // SAFETY: `src` is `ow` rows of `n` floats; `tr` holds `n` rows of `ow8`.
                unsafe { transpose(src.as_ptr(), n, tr.as_mut_ptr(), ow8, ow, n) };
                for (img, t) in tr.chunks_exact(ow8).enumerate() {
                    let at = ((img * co + o) * oh + oy) * ow;
                    let b = bias.map_or(0.0, |b| add.offset(b, co, img, o));
                    // SAFETY: row `oy` of channel `o` of image `img`, written by this item
                    // only (items own distinct (oy, o)); `y` outlives the loop.
                    let dst: &mut [MaybeUninit<f32>] =
                        unsafe { std::slice::from_raw_parts_mut(yp.at(at).cast(), ow) };
                    match add {
                        Add::Residual(r) => {
                            for ((d, &s), &r) in dst.iter_mut().zip(t).zip(&r[at..at + ow]) {
                                d.write(s + b + r);
                            }
                        }
                        _ => {
                            for (d, &s) in dst.iter_mut().zip(t) {
                                d.write(s + b);
                            }
                        }
                    }
                }
            }
        },
    );
    // SAFETY: the items own every (oy, o) pair (all rows, all channel blocks below `co`), and
    // each wrote its rows of every image in full (`ow` floats each).
    unsafe { super::buf::assume_init(y) }
}

/// Stride-1 convolution forward with bias (and `add`), `[n, co, oh, ow]`.
pub(crate) fn conv2d_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    conv2d_forward_with(direct::this_isa(), g, x, w, bias, add)
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
    let grid = input_grid(g);
    let xt = grid.fill(x, g.ci);
    let a = direct::pack_weights(w, g.co, g.k(), isa.mr());
    correlate(isa, &grid, g.co, &xt, &a, Some(bias), add)
}

/// The grid of the input of `g`.
fn input_grid(g: &ConvGeom) -> Grid {
    Grid::new(
        g.n,
        g.ci,
        [g.h, g.w],
        [g.kh, g.kw],
        [g.pt, g.pl],
        [g.oh, g.ow],
    )
}

/// `(dx, dW)` of a stride-1 convolution, each if asked for: dx is the full correlation of `dy`
/// with the flipped kernel, `dW[o][(c,i,j)] = Σ_n Σ_{oy,ox} dy[n][o][oy][ox] ·
/// x[n][c][oy + i − pt][ox + j − pl]`. Both read dy from one padded grid (dW its interior).
pub(crate) fn conv2d_grads(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
    need_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    conv2d_grads_with(direct::this_isa(), g, x, w, dy, need_dx, need_dw)
}

/// [`conv2d_grads`] with the micro-kernels of `isa` (which the CPU must have).
pub(crate) fn conv2d_grads_with(
    isa: Isa,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
    need_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if !need_dx && !need_dw {
        return (None, None);
    }
    let (kh, kw) = (g.kh, g.kw);
    // dy padded by kh − 1 − pt on top (kw − 1 − pl on the left) for an h×w output, with the
    // channels rounded up to the dW kernel's blocks (zero).
    let (top, left) = (kh - 1 - g.pt, kw - 1 - g.pl);
    let dgrid = Grid::new(g.n, g.co, [g.oh, g.ow], [kh, kw], [top, left], [g.h, g.w]);
    let dyt = dgrid.fill(dy, g.co.next_multiple_of(direct::WR));
    let dx = need_dx.then(|| {
        let a = direct::pack_flipped(g, w, isa.mr());
        correlate(isa, &dgrid, g.ci, &dyt, &a, None, Add::None)
    });
    let dw = need_dw.then(|| {
        let grid = input_grid(g);
        let xt = grid.fill(x, g.ci);
        DwSums {
            co: g.co,
            units: g.oh,
            qlen: g.ow * g.n,
            dy: &dyt[(top * dgrid.wp + left) * g.n..],
            dy_unit: dgrid.wp * g.n,
            dy_ch: dgrid.plane(),
            x: &xt,
            x_unit: grid.wp * g.n,
            koff: grid.row_offsets(),
        }
        .run(isa)
    });
    (dx, dw)
}
