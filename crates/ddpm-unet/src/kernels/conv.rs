//! Convolutions on plain `f32` slices (NCHW, contiguous) behind the Flex fast path.
//!
//! 3×3 same convolutions with at least 128 input and output channels run Winograd's
//! F(2×2, 3×3) ([`super::winograd`]; forward, dx and dW). Other stride-1 convolutions larger
//! than 1×1 run the direct kernels of [`super::direct`] where the CPU has AVX-512 or AVX2 +
//! FMA. Everything else runs im2col + one gemm per image, with a backward that is
//! also two gemms per image: dW += dY·colsᵀ and dcols = Wᵀ·dY followed by col2im (1×1
//! convolutions skip im2col: the image is the matrix). Burn's generic backward instead
//! computes dW as a convolution of the batch-swapped input with the batch-swapped output
//! gradient and materialises both swapped tensors first; on Flex that was ~30% of a training
//! step.
//!
//! Images of a batch are processed in parallel (rayon); a batch smaller than the thread
//! pool lets gemm parallelise inside each product instead.

use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul::{View, matmul};

/// The geometry of one 2-D convolution (stride and zero padding; no groups, no dilation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Zero padding before the first row / column (the bottom / right padding is implied by
    /// `oh` / `ow`).
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// Rows of the im2col matrix: `ci·kh·kw`.
    pub(crate) fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    /// Output positions per image: `oh·ow`.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image_len(&self) -> usize {
        self.ci * self.h * self.w
    }

    /// A 1×1, stride-1, unpadded conv: the image itself is the im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Output columns `ox` whose input column `ox·sw + j − pl` lies inside the image.
    fn valid_cols(&self, j: usize) -> (usize, usize) {
        let lo = if j >= self.pl {
            0
        } else {
            (self.pl - j).div_ceil(self.sw)
        };
        let hi = (self.w + self.pl).saturating_sub(j).div_ceil(self.sw);
        (lo.min(self.ow), hi.min(self.ow).max(lo.min(self.ow)))
    }

    /// The input row of output row `oy` for kernel row `i`, if inside the image.
    fn input_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.sh + i)
            .checked_sub(self.pt)
            .filter(|&iy| iy < self.h)
    }

    fn parallelism(&self) -> Parallelism {
        if self.n >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        }
    }
}

/// `cols[(c·kh + i)·kw + j][oy·ow + ox] = x[c][oy·sh + i − pt][ox·sw + j − pl]` (0 outside).
fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let p = g.p();
    for c in 0..g.ci {
        let xc = &x[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * p..][..p];
                let (lo, hi) = g.valid_cols(j);
                for oy in 0..g.oh {
                    let out = &mut row[oy * g.ow..][..g.ow];
                    let Some(iy) = g.input_row(oy, i) else {
                        out.fill(0.0);
                        continue;
                    };
                    let xr = &xc[iy * g.w..][..g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if g.sw == 1 {
                        if hi > lo {
                            let start = lo + j - g.pl;
                            out[lo..hi].copy_from_slice(&xr[start..start + (hi - lo)]);
                        }
                    } else {
                        for (ox, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                            *o = xr[ox * g.sw + j - g.pl];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c][iy][ix] += cols[(c, i, j)][(oy, ox)]`; `dx` starts zeroed.
fn col2im(g: &ConvGeom, cols: &[f32], dx: &mut [f32]) {
    let p = g.p();
    for c in 0..g.ci {
        let dxc = &mut dx[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &cols[((c * g.kh + i) * g.kw + j) * p..][..p];
                let (lo, hi) = g.valid_cols(j);
                for oy in 0..g.oh {
                    let Some(iy) = g.input_row(oy, i) else {
                        continue;
                    };
                    let src = &row[oy * g.ow..][..g.ow];
                    let dr = &mut dxc[iy * g.w..][..g.w];
                    if g.sw == 1 {
                        if hi > lo {
                            let start = lo + j - g.pl;
                            let dst = &mut dr[start..start + (hi - lo)];
                            for (d, s) in dst.iter_mut().zip(&src[lo..hi]) {
                                *d += s;
                            }
                        }
                    } else {
                        for (ox, s) in src.iter().enumerate().take(hi).skip(lo) {
                            dr[ox * g.sw + j - g.pl] += s;
                        }
                    }
                }
            }
        }
    }
}

/// What the output pass of a convolution adds besides the bias.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Add<'a> {
    /// Nothing.
    None,
    /// A per-(image, channel) shift `[n, co]` (a residual block's time embedding).
    Shift(&'a [f32]),
    /// A tensor of the output's shape `[n, co, oh, ow]` (a residual connection).
    Residual(&'a [f32]),
}

impl Add<'_> {
    /// The constant added to output channel `o` of image `img` (bias and shift).
    pub(crate) fn offset(&self, bias: &[f32], co: usize, img: usize, o: usize) -> f32 {
        match self {
            Add::Shift(s) => bias[o] + s[img * co + o],
            _ => bias[o],
        }
    }
}

/// Convolution forward: `y[n][o] = b[o] + Σ W[o]·im2col(x[n])` (+ `add`), shape
/// `[n, co, oh, ow]`.
pub(crate) fn conv2d_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    if use_winograd(g) {
        return super::winograd::conv2d_forward(g, x, w, bias, add);
    }
    #[cfg(target_arch = "x86_64")]
    if use_direct(g) && !gemm_forward_is_faster(g) {
        if use_batched(g) {
            return super::batched::conv2d_forward(g, x, w, bias, add);
        }
        return super::direct::conv2d_forward(g, x, w, bias, add);
    }
    im2col_forward(g, x, w, bias, add)
}

/// Forward convolutions with at least this many input and output channels run through
/// im2col + gemm even where the direct kernel applies (3×3 same ones run Winograd first,
/// unless it is switched off); their gradients still use the direct kernels. Measured on a Zen 4 (AVX-512) VM, `ddpm bench --preset ddpm-cifar10` (128/256
/// channels): forward b8 593–614 ms through gemm against 646–710 ms direct, while the direct
/// backward keeps the training step faster (train b8 2161 ms direct against 2386 ms all
/// gemm); on a Zen 3 (AVX2) VM the two forward paths were within 2% (781 vs 792 ms). The
/// MNIST presets (32–64 channels) are below the threshold and keep the direct forward, which
/// is faster there: with the threshold at 64, `mnist` forward b64 took 368–445 ms (median of
/// 9, five interleaved rounds) against 341–356 ms at 128. Raising it to 256 moved
/// `ddpm-cifar10` forward b8 by less than the noise (591–646 against 599–641 ms, four rounds).
#[cfg(target_arch = "x86_64")]
const GEMM_FORWARD_MIN_CHANNELS: usize = 128;

/// Whether [`im2col_forward`] beats the direct forward kernel for `g` (see
/// [`GEMM_FORWARD_MIN_CHANNELS`]).
#[cfg(target_arch = "x86_64")]
fn gemm_forward_is_faster(g: &ConvGeom) -> bool {
    g.ci >= GEMM_FORWARD_MIN_CHANNELS && g.co >= GEMM_FORWARD_MIN_CHANNELS
}

/// Whether the Winograd kernels serve `g` (switched on, 3×3 same convolution, enough
/// channels).
fn use_winograd(g: &ConvGeom) -> bool {
    super::winograd_conv_enabled() && super::winograd::applies(g)
}

/// Whether the direct kernels serve `g` (switched on, AVX-512 or AVX2, stride 1, …).
#[cfg(target_arch = "x86_64")]
fn use_direct(g: &ConvGeom) -> bool {
    super::direct_conv_enabled() && super::direct::applies(g)
}

/// Whether the direct kernels run on the batch-innermost grid for `g` (switched on, batch a
/// multiple of 16; the caller has checked [`use_direct`]).
#[cfg(target_arch = "x86_64")]
fn use_batched(g: &ConvGeom) -> bool {
    super::batched_conv_enabled() && super::batched::applies(g)
}

/// [`conv2d_forward`] through im2col + gemm (any geometry).
fn im2col_forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32], add: Add<'_>) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let mut y = super::buf::zeroed(g.n * g.co * p);
    if y.is_empty() {
        return y;
    }
    let pointwise = g.is_pointwise();
    let parallelism = g.parallelism();
    let wv = View {
        data: w,
        rs: k,
        cs: 1,
    };
    y.par_chunks_mut(g.co * p).enumerate().for_each_init(
        || vec![0f32; if pointwise { 0 } else { k * p }],
        |cols, (img, yn)| {
            let xn = &x[img * g.image_len()..][..g.image_len()];
            let rhs = if pointwise {
                xn
            } else {
                im2col(g, xn, cols);
                cols.as_slice()
            };
            for (o, row) in yn.chunks_exact_mut(p).enumerate() {
                let b = add.offset(bias, g.co, img, o);
                match add {
                    Add::Residual(r) => {
                        let src = &r[(img * g.co + o) * p..][..p];
                        for (d, &v) in row.iter_mut().zip(src) {
                            *d = v + b;
                        }
                    }
                    _ => row.fill(b),
                }
            }
            let rv = View {
                data: rhs,
                rs: p,
                cs: 1,
            };
            matmul(g.co, p, k, yn, wv, rv, true, parallelism);
        },
    );
    y
}

/// `(dx, dW, db)`, each computed only if asked for.
pub(crate) type ConvGrads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// Gradients of [`conv2d_forward`] for the requested inputs: `(dx, dW, db)`.
pub(crate) fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 3],
) -> ConvGrads {
    let [need_dx, need_dw, need_db] = need;
    let db = need_db.then(|| {
        let mut db = vec![0f32; g.co];
        for row in channel_sums(g, dy).chunks_exact(g.co) {
            for (d, v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
        db
    });
    if !need_dx && !need_dw {
        return (None, None, db);
    }
    if use_winograd(g) {
        let dx = need_dx.then(|| super::winograd::conv2d_input_grad(g, w, dy));
        let dw = need_dw.then(|| super::winograd::conv2d_weight_grad(g, x, dy));
        return (dx, dw, db);
    }
    #[cfg(target_arch = "x86_64")]
    if use_direct(g) {
        if use_batched(g) {
            let (dx, dw) = super::batched::conv2d_grads(g, x, w, dy, need_dx, need_dw);
            return (dx, dw, db);
        }
        let dx = need_dx.then(|| super::direct::conv2d_input_grad(g, w, dy));
        let dw = need_dw.then(|| super::direct::conv2d_weight_grad(g, x, dy));
        return (dx, dw, db);
    }
    let (dx, dw) = im2col_backward(g, x, w, dy, need_dx, need_dw);
    (dx, dw, db)
}

/// `Σ_{oy,ox} dy[n][o][oy][ox]` per image and channel, `[n, co]` (the gradient of a
/// [`Add::Shift`]; summed over the batch, the bias gradient).
pub(crate) fn channel_sums(g: &ConvGeom, dy: &[f32]) -> Vec<f32> {
    let p = g.p();
    if p == 0 {
        return vec![0f32; g.n * g.co];
    }
    dy.par_chunks(p)
        .map(|row| row.iter().map(|&v| v as f64).sum::<f64>() as f32)
        .collect()
}

/// `(dx, dW)` of [`conv2d_forward`] through im2col + gemm; at least one is asked for.
fn im2col_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
    need_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (k, p) = (g.k(), g.p());
    let pointwise = g.is_pointwise();
    let parallelism = g.parallelism();

    // One pass over the images: dW accumulates per worker, dx is written per image.
    let chunk = if need_dx { g.image_len() } else { 1 };
    let mut dx = super::buf::zeroed(g.n * chunk);
    let w_t = View {
        data: w,
        rs: 1,
        cs: k,
    };
    let dw = dx
        .par_chunks_mut(chunk)
        .enumerate()
        .fold(
            || {
                let dw = if need_dw {
                    vec![0f32; g.co * k]
                } else {
                    Vec::new()
                };
                let cols = vec![0f32; if pointwise { 0 } else { k * p }];
                (dw, cols)
            },
            |(mut dw, mut cols), (img, dxn)| {
                let dyn_ = View {
                    data: &dy[img * g.co * p..][..g.co * p],
                    rs: p,
                    cs: 1,
                };
                if need_dw {
                    let xn = &x[img * g.image_len()..][..g.image_len()];
                    let cols_t = if pointwise {
                        xn
                    } else {
                        im2col(g, xn, &mut cols);
                        cols.as_slice()
                    };
                    let rv = View {
                        data: cols_t,
                        rs: 1,
                        cs: p,
                    };
                    matmul(g.co, k, p, &mut dw, dyn_, rv, true, parallelism);
                }
                if need_dx {
                    if pointwise {
                        matmul(k, p, g.co, dxn, w_t, dyn_, false, parallelism);
                    } else {
                        matmul(k, p, g.co, &mut cols, w_t, dyn_, false, parallelism);
                        col2im(g, &cols, dxn);
                    }
                }
                (dw, cols)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(Vec::new, |mut a, b| {
            if a.is_empty() {
                return b;
            }
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        });
    let dw = need_dw.then(|| {
        if dw.is_empty() {
            vec![0f32; g.co * k]
        } else {
            dw
        }
    });
    (need_dx.then_some(dx), dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct (quadruple-loop) convolution in f64, the oracle for im2col + gemm.
    fn conv_naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; g.n * g.co * g.p()];
        for n in 0..g.n {
            for o in 0..g.co {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = b[o] as f64;
                        for c in 0..g.ci {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.sh + i) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + j) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((o * g.ci + c) * g.kh + i) * g.kw + j];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * g.co + o) * g.oh + oy) * g.ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    /// Direct-loop gradients of Σ y·dy in f64: `(dx, dW)`.
    fn conv_naive_backward(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0f64; g.n * g.image_len()];
        let mut dw = vec![0f64; g.co * g.k()];
        for n in 0..g.n {
            for o in 0..g.co {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let d = dy[((n * g.co + o) * g.oh + oy) * g.ow + ox] as f64;
                        for c in 0..g.ci {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.sh + i) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + j) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((o * g.ci + c) * g.kh + i) * g.kw + j;
                                    dx[xi] += d * w[wi] as f64;
                                    dw[wi] += d * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    /// A geometry from sizes, kernel, stride and the four paddings (top, left, bottom, right).
    #[allow(clippy::too_many_arguments)]
    fn geom(
        n: usize,
        ci: usize,
        co: usize,
        [h, w]: [usize; 2],
        [kh, kw]: [usize; 2],
        [sh, sw]: [usize; 2],
        [pt, pl, pb, pr]: [usize; 4],
    ) -> ConvGeom {
        ConvGeom {
            n,
            ci,
            h,
            w,
            co,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            oh: (h + pt + pb - kh) / sh + 1,
            ow: (w + pl + pr - kw) / sw + 1,
        }
    }

    /// Stride-1 geometries the direct kernels serve: channel counts off the micro-kernels'
    /// blocks (8 / 4 outputs, 6 rows), K beyond one 128 block, batches smaller and larger
    /// than the thread pool, 3×3 same, valid, 5×5 and asymmetric padding, odd sizes.
    fn stride1_geoms() -> Vec<ConvGeom> {
        vec![
            geom(2, 3, 4, [8, 7], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(1, 20, 19, [6, 11], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(5, 16, 16, [7, 7], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(2, 3, 5, [7, 6], [3, 3], [1, 1], [0, 0, 0, 0]),
            geom(1, 4, 9, [6, 9], [5, 5], [1, 1], [2, 2, 2, 2]),
            geom(3, 5, 3, [5, 8], [3, 3], [1, 1], [1, 0, 2, 1]),
            geom(2, 1, 17, [28, 28], [3, 3], [1, 1], [1, 1, 1, 1]),
        ]
    }

    /// Max |got − want| / (1 + max |want|).
    fn rel_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = 1.0 + want.iter().fold(0f64, |m, v| m.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |m, (&a, &e)| m.max((a as f64 - e).abs()))
            / scale
    }

    /// Checks forward, dx and dW of one conv implementation against the direct loops.
    fn check_conv_impl(
        g: &ConvGeom,
        forward: impl Fn(&ConvGeom, &[f32], &[f32], &[f32]) -> Vec<f32>,
        backward: impl Fn(&ConvGeom, &[f32], &[f32], &[f32]) -> (Vec<f32>, Vec<f32>),
    ) {
        let x = values(g.n * g.image_len(), 1);
        let wt = values(g.co * g.k(), 2);
        let b = values(g.co, 3);
        let dy = values(g.n * g.co * g.p(), 4);
        let err = rel_err(&forward(g, &x, &wt, &b), &conv_naive(g, &x, &wt, &b));
        assert!(err < 2e-5, "{g:?}: y relative error {err:e}");
        let (dx, dw) = backward(g, &x, &wt, &dy);
        let (want_dx, want_dw) = conv_naive_backward(g, &x, &wt, &dy);
        let err = rel_err(&dx, &want_dx);
        assert!(err < 2e-5, "{g:?}: dx relative error {err:e}");
        let err = rel_err(&dw, &want_dw);
        assert!(err < 2e-5, "{g:?}: dW relative error {err:e}");
    }

    #[test]
    fn im2col_conv_matches_direct_loops() {
        let mut cases = stride1_geoms();
        cases.push(geom(2, 3, 4, [8, 7], [1, 1], [1, 1], [0, 0, 0, 0]));
        cases.push(geom(2, 4, 4, [8, 8], [3, 3], [2, 2], [0, 0, 1, 1]));
        cases.push(geom(1, 4, 6, [7, 9], [3, 3], [2, 2], [1, 1, 1, 1]));
        for g in cases {
            check_conv_impl(
                &g,
                |g, x, w, b| im2col_forward(g, x, w, b, Add::None),
                |g, x, w, dy| {
                    let (dx, dw) = im2col_backward(g, x, w, dy, true, true);
                    (dx.unwrap(), dw.unwrap())
                },
            );
        }
    }

    /// Both forward paths with a per-(image, channel) shift and with a residual added.
    #[test]
    fn output_pass_adds_shift_and_residual() {
        let g = geom(2, 3, 5, [6, 7], [3, 3], [1, 1], [1, 1, 1, 1]);
        let (x, wt, b) = (
            values(g.n * g.image_len(), 1),
            values(g.co * g.k(), 2),
            values(g.co, 3),
        );
        let shift = values(g.n * g.co, 5);
        let res = values(g.n * g.co * g.p(), 6);
        let plain = conv_naive(&g, &x, &wt, &b);
        let with_shift: Vec<f64> = plain
            .iter()
            .enumerate()
            .map(|(i, v)| v + shift[i / g.p()] as f64)
            .collect();
        let with_res: Vec<f64> = plain.iter().zip(&res).map(|(v, &r)| v + r as f64).collect();
        type IsaForwardFn = Box<dyn Fn(&ConvGeom, &[f32], &[f32], &[f32], Add<'_>) -> Vec<f32>>;
        let mut paths: Vec<(String, IsaForwardFn)> =
            vec![("im2col".into(), Box::new(im2col_forward) as IsaForwardFn)];
        #[cfg(target_arch = "x86_64")]
        for isa in super::super::direct::supported() {
            paths.push((
                format!("direct {isa:?}"),
                Box::new(move |g, x, w, b, add| {
                    super::super::direct::conv2d_forward_with(isa, g, x, w, b, add)
                }),
            ));
        }
        for (name, forward) in paths {
            let err = rel_err(&forward(&g, &x, &wt, &b, Add::Shift(&shift)), &with_shift);
            assert!(err < 2e-5, "{name} shift: {err:e}");
            let err = rel_err(&forward(&g, &x, &wt, &b, Add::Residual(&res)), &with_res);
            assert!(err < 2e-5, "{name} residual: {err:e}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn direct_conv_matches_direct_loops() {
        use super::super::direct;
        let isas = direct::supported();
        if isas.is_empty() {
            eprintln!(
                "neither AVX-512 nor AVX2 + FMA on this CPU: the direct kernels are not tested here"
            );
            return;
        }
        for isa in isas {
            for g in stride1_geoms() {
                assert!(direct::applies(&g), "{g:?}");
                check_conv_impl(
                    &g,
                    |g, x, w, b| direct::conv2d_forward_with(isa, g, x, w, b, Add::None),
                    |g, x, w, dy| {
                        (
                            direct::conv2d_input_grad_with(isa, g, w, dy),
                            direct::conv2d_weight_grad_with(isa, g, x, dy),
                        )
                    },
                );
            }
        }
    }

    /// The batch-innermost grid: forward (with each kind of [`Add`]), dx and dW against the
    /// float64 loops for both ISAs, at batches 16 and 32, with asymmetric and no padding,
    /// a 5×5 kernel, channel counts off the micro-kernels' blocks (3, 5, 9, 17), and maps
    /// whose runs `ow·n` split into strips of every width (7×7 at n 16: 112 floats).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn batched_conv_matches_direct_loops() {
        use super::super::{batched, direct};
        let cases = [
            geom(16, 3, 5, [7, 7], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(32, 9, 17, [5, 6], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(16, 4, 3, [6, 9], [5, 5], [1, 1], [2, 2, 2, 2]),
            geom(16, 5, 4, [5, 8], [3, 3], [1, 1], [1, 0, 2, 1]),
            geom(16, 2, 3, [7, 6], [3, 3], [1, 1], [0, 0, 0, 0]),
        ];
        for isa in direct::supported() {
            for g in &cases {
                assert!(batched::applies(g), "{g:?}");
                check_conv_impl(
                    g,
                    |g, x, w, b| batched::conv2d_forward_with(isa, g, x, w, b, Add::None),
                    |g, x, w, dy| {
                        let grads = |dx, dw| batched::conv2d_grads_with(isa, g, x, w, dy, dx, dw);
                        let (dx, dw) = (grads(true, false).0, grads(false, true).1);
                        let both = grads(true, true);
                        assert_eq!((&dx, &dw), (&both.0, &both.1), "{g:?}: alone and together");
                        (dx.unwrap(), dw.unwrap())
                    },
                );
            }
            // Forward and dx are the per-image grid's sums in the same order: the same bits.
            for g in &cases {
                let (x, wt, b) = (
                    values(g.n * g.image_len(), 1),
                    values(g.co * g.k(), 2),
                    values(g.co, 3),
                );
                let dy = values(g.n * g.co * g.p(), 4);
                assert_eq!(
                    batched::conv2d_forward_with(isa, g, &x, &wt, &b, Add::None),
                    direct::conv2d_forward_with(isa, g, &x, &wt, &b, Add::None),
                    "{g:?}"
                );
                assert_eq!(
                    batched::conv2d_grads_with(isa, g, &x, &wt, &dy, true, false).0,
                    Some(direct::conv2d_input_grad_with(isa, g, &wt, &dy)),
                    "{g:?}"
                );
            }
            let g = &cases[1];
            let (x, wt, b) = (
                values(g.n * g.image_len(), 1),
                values(g.co * g.k(), 2),
                values(g.co, 3),
            );
            let (shift, res) = (values(g.n * g.co, 5), values(g.n * g.co * g.p(), 6));
            let plain = conv_naive(g, &x, &wt, &b);
            let want: Vec<f64> = plain
                .iter()
                .enumerate()
                .map(|(i, v)| v + shift[i / g.p()] as f64)
                .collect();
            let got = batched::conv2d_forward_with(isa, g, &x, &wt, &b, Add::Shift(&shift));
            assert!(rel_err(&got, &want) < 2e-5, "{isa:?} shift");
            let want: Vec<f64> = plain.iter().zip(&res).map(|(v, &r)| v + r as f64).collect();
            let got = batched::conv2d_forward_with(isa, g, &x, &wt, &b, Add::Residual(&res));
            assert!(rel_err(&got, &want) < 2e-5, "{isa:?} residual");
        }
        assert!(!batched::applies(&geom(
            8,
            3,
            5,
            [7, 7],
            [3, 3],
            [1, 1],
            [1, 1, 1, 1]
        )));
        assert!(!batched::applies(&geom(
            24,
            3,
            5,
            [7, 7],
            [3, 3],
            [1, 1],
            [1, 1, 1, 1]
        )));
    }

    /// Winograd F(2×2, 3×3) forward (with each kind of [`Add`]), input and weight gradients against
    /// the float64 loops, at the same tolerance as the other paths: odd and even sizes (partial
    /// tiles), 1×1 and 2×2 maps, channel counts below and above the dispatch threshold.
    #[test]
    fn winograd_conv_matches_direct_loops() {
        use super::super::winograd;
        let cases = [
            geom(2, 3, 5, [6, 7], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(1, 20, 19, [7, 11], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(3, 4, 2, [1, 1], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(2, 6, 5, [2, 2], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(2, 1, 17, [28, 28], [3, 3], [1, 1], [1, 1, 1, 1]),
            geom(2, 128, 130, [9, 8], [3, 3], [1, 1], [1, 1, 1, 1]),
        ];
        for g in cases {
            assert!(winograd::is_same_3x3(&g), "{g:?}");
            let x = values(g.n * g.image_len(), 1);
            let wt = values(g.co * g.k(), 2);
            let b = values(g.co, 3);
            let dy = values(g.n * g.co * g.p(), 4);
            let shift = values(g.n * g.co, 5);
            let res = values(g.n * g.co * g.p(), 6);
            let plain = conv_naive(&g, &x, &wt, &b);
            let err = rel_err(
                &winograd::conv2d_forward(&g, &x, &wt, &b, Add::None),
                &plain,
            );
            assert!(err < 2e-5, "{g:?}: y relative error {err:e}");
            let want: Vec<f64> = (plain.iter().enumerate())
                .map(|(i, v)| v + shift[i / g.p()] as f64)
                .collect();
            let got = winograd::conv2d_forward(&g, &x, &wt, &b, Add::Shift(&shift));
            let err = rel_err(&got, &want);
            assert!(err < 2e-5, "{g:?}: y + shift relative error {err:e}");
            let want: Vec<f64> = plain.iter().zip(&res).map(|(v, &r)| v + r as f64).collect();
            let got = winograd::conv2d_forward(&g, &x, &wt, &b, Add::Residual(&res));
            let err = rel_err(&got, &want);
            assert!(err < 2e-5, "{g:?}: y + residual relative error {err:e}");
            let (want_dx, want_dw) = conv_naive_backward(&g, &x, &wt, &dy);
            let err = rel_err(&winograd::conv2d_input_grad(&g, &wt, &dy), &want_dx);
            assert!(err < 2e-5, "{g:?}: dx relative error {err:e}");
            let err = rel_err(&winograd::conv2d_weight_grad(&g, &x, &dy), &want_dw);
            assert!(err < 2e-5, "{g:?}: dW relative error {err:e}");
        }
        // The dispatch takes the Winograd path from 128 channels and 32 tiles, and only for
        // same 3×3.
        assert!(winograd::applies(&cases[5]));
        assert!(!winograd::applies(&cases[1]));
        let few_tiles = geom(1, 128, 128, [8, 8], [3, 3], [1, 1], [1, 1, 1, 1]);
        assert!(winograd::is_same_3x3(&few_tiles) && !winograd::applies(&few_tiles));
        let valid = geom(1, 128, 128, [6, 6], [3, 3], [1, 1], [0, 0, 0, 0]);
        assert!(!winograd::is_same_3x3(&valid) && !winograd::applies(&valid));
        let strided = geom(1, 128, 128, [6, 6], [3, 3], [2, 2], [1, 1, 1, 1]);
        assert!(!winograd::applies(&strided));
    }

    /// The Winograd kernels' blocking does not follow the pool's size, so their results are
    /// the same bits with 1 thread as with 3 (bit-exact resume across machines relies on it).
    #[test]
    fn winograd_results_do_not_depend_on_the_thread_count() {
        use super::super::winograd;
        let g = geom(3, 6, 5, [9, 10], [3, 3], [1, 1], [1, 1, 1, 1]);
        let x = values(g.n * g.image_len(), 1);
        let wt = values(g.co * g.k(), 2);
        let b = values(g.co, 3);
        let dy = values(g.n * g.co * g.p(), 4);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                (
                    winograd::conv2d_forward(&g, &x, &wt, &b, Add::None),
                    winograd::conv2d_input_grad(&g, &wt, &dy),
                    winograd::conv2d_weight_grad(&g, &x, &dy),
                )
            })
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (one, three) = (run(1), run(3));
        assert_eq!(bits(&one.0), bits(&three.0), "y");
        assert_eq!(bits(&one.1), bits(&three.1), "dx");
        assert_eq!(bits(&one.2), bits(&three.2), "dW");
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn conv_forward_matches_direct_loops() {
        // 3×3 same, 1×1, stride-2 with asymmetric (0, 1) padding, an odd width.
        let cases = [
            (3, 3, 1, 1, 1, 1, 5, 7),
            (1, 1, 1, 1, 0, 0, 5, 7),
            (3, 3, 2, 2, 0, 0, 4, 4),
            (3, 3, 2, 2, 1, 1, 5, 3),
        ];
        for (kh, kw, sh, sw, pt, pl, oh, ow) in cases {
            let (n, ci, co, h, w) = (2, 3, 4, 8, 7);
            let oh = if kh == 1 { h } else { oh };
            let ow = if kw == 1 { w } else { ow };
            let g = ConvGeom {
                n,
                ci,
                h,
                w,
                co,
                kh,
                kw,
                sh,
                sw,
                pt,
                pl,
                oh,
                ow,
            };
            let x = values(n * ci * h * w, 1);
            let wt = values(co * ci * kh * kw, 2);
            let b = values(co, 3);
            let got = conv2d_forward(&g, &x, &wt, &b, Add::None);
            let want = conv_naive(&g, &x, &wt, &b);
            for (a, e) in got.iter().zip(&want) {
                assert!((*a as f64 - e).abs() < 1e-5, "{g:?}: {a} vs {e}");
            }
        }
    }
}
