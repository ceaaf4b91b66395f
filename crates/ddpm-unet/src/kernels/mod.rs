//! The U-Net's hot ops, with fast CPU kernels on the Flex backend.
//!
//! [`conv2d`], [`group_norm`] and [`attention`] compute exactly what
//! `burn::nn::conv::Conv2d::forward`, `burn::nn::GroupNorm::forward` (followed by SiLU when
//! asked) and `burn::tensor::module::attention` compute, for every backend. On `Flex` and
//! `Autodiff<Flex>` with f32 tensors (and the crate feature `flex`, on by default) they run
//! this crate's own kernels instead of Burn's composite ops:
//!
//! - 3×3 same convolutions with ≥ 128 input and output channels by Winograd's F(2×2, 3×3)
//!   (2.25× fewer products; forward, dx and dW as 16 gemms each between vectorised
//!   transforms; [`set_winograd_conv`] switches it off);
//! - other stride-1 convolutions as an implicit GEMM over zero-padded planes with AVX-512 or
//!   AVX2 + FMA micro-kernels (forward, dx and dW; no im2col), where the CPU has either, on a
//!   grid with the batch innermost when the batch is a multiple of 16 (no padding columns
//!   computed; [`set_batched_conv`]); other
//!   convolutions (and other CPUs) as im2col + gemm with a two-gemm backward (Burn's generic
//!   backward computes the weight gradient as a convolution of batch-swapped tensors);
//! - GroupNorm with the SiLU fused in, two passes forward and two backward (Burn's version is
//!   ~10 tensor ops forward and ~20 backward, several of them broadcasts Flex runs through a
//!   scalar strided iterator), vectorised for the CPU's widest SIMD;
//! - attention softmax(q kᵀ/√d) v with its own backward (Burn composes it from ~12 ops under
//!   autodiff), also on channels-first feature maps ([`attention_channels_first`]; with
//!   [`linear_channels_first`], 1×1 convolutions, the attention block transposes nothing);
//! - the Adam update of a parameter and its moments ([`adam_update`]) and the EMA of the
//!   weights ([`ema_update`]), each in one parallel pass (Burn's `Adam` is ~13 serial
//!   element-wise passes per parameter on Flex, the EMA 3).
//!
//! Every other backend (wgpu, CUDA, …) takes Burn's ops unchanged. The fast path can be
//! switched off at run time ([`set_fast_kernels`], or `DDPM_FLEX_KERNELS=0` in the
//! environment) to compare the two, and the direct convolutions alone with
//! [`set_direct_conv`] (`DDPM_DIRECT_CONV=0`); `tests/kernels.rs` checks values and gradients
//! against Burn's ops on random inputs.

#[cfg(feature = "flex")]
mod adam;
#[cfg(feature = "flex")]
mod attention;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod batched;
#[cfg(feature = "flex")]
mod buf;
#[cfg(feature = "flex")]
mod conv;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod direct;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod layout;
#[cfg(feature = "flex")]
mod matmul;
#[cfg(feature = "flex")]
mod norm;
#[cfg(feature = "flex")]
mod simd;
#[cfg(feature = "flex")]
mod winograd;

use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(feature = "flex")]
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

/// A process-wide on/off switch, on by default unless its environment variable is `0` (read
/// once, at the first question, unless [`Switch::set`] came first).
struct Switch {
    /// 0: not read yet, 1: on, 2: off.
    state: AtomicU8,
    env: &'static str,
}

impl Switch {
    const fn new(env: &'static str) -> Self {
        Self {
            state: AtomicU8::new(0),
            env,
        }
    }

    fn set(&self, enabled: bool) {
        self.state
            .store(if enabled { 1 } else { 2 }, Ordering::Relaxed);
    }

    fn enabled(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let on = std::env::var(self.env).map_or(true, |v| v.trim() != "0");
                self.set(on);
                on
            }
        }
    }
}

static FAST: Switch = Switch::new("DDPM_FLEX_KERNELS");
static DIRECT: Switch = Switch::new("DDPM_DIRECT_CONV");
static WINOGRAD: Switch = Switch::new("DDPM_WINOGRAD_CONV");
static BATCHED: Switch = Switch::new("DDPM_BATCHED_CONV");

/// Turns the Flex fast kernels on or off for the whole process (they are on by default
/// unless `DDPM_FLEX_KERNELS=0`). Off means Burn's own ops, on every backend.
pub fn set_fast_kernels(enabled: bool) {
    FAST.set(enabled);
}

/// Turns the direct (implicit-GEMM, AVX-512 / AVX2) convolution kernels on or off for the whole
/// process. They are on by default (unless `DDPM_DIRECT_CONV=0`) and serve stride-1
/// convolutions larger than 1×1 on CPUs with AVX-512 or AVX2 + FMA; off (or elsewhere) the fast path runs
/// im2col + gemm. For A/B measurements.
pub fn set_direct_conv(enabled: bool) {
    DIRECT.set(enabled);
}

/// Whether the direct convolution kernels may be used (see [`set_direct_conv`]).
pub fn direct_conv_enabled() -> bool {
    DIRECT.enabled()
}

/// Turns the Winograd F(2×2, 3×3) convolutions on or off for the whole process. They are on
/// by default (unless `DDPM_WINOGRAD_CONV=0`) and serve 3×3, stride-1, padding-1 convolutions
/// with at least 128 input and output channels and 32 output tiles of 2×2 over the batch
/// (forward, input and weight gradients) on the fast path; off, those run the direct kernels or im2col + gemm. Winograd regroups the sums, so
/// its results differ from the direct sum by rounding; switch it off for A/B measurements or
/// to reproduce the direct sum's bits.
pub fn set_winograd_conv(enabled: bool) {
    WINOGRAD.set(enabled);
}

/// Whether the Winograd convolution kernels may be used (see [`set_winograd_conv`]).
pub fn winograd_conv_enabled() -> bool {
    WINOGRAD.enabled()
}

/// Turns the batch-innermost layout of the direct convolutions on or off for the whole
/// process. It is on by default (unless `DDPM_BATCHED_CONV=0`) and serves the direct kernels'
/// convolutions whose batch is a multiple of 16: the same micro-kernels run on a grid with
/// the images innermost, which computes no padding columns (a 7×7 map's 49 positions per
/// image instead of 64). Forward and input gradient are the same sums in the same order as on
/// the per-image grid (the same bits); the weight gradient's partial sums are grouped
/// differently (rounding differs). Off, those convolutions run on the per-image grid. For A/B
/// measurements.
pub fn set_batched_conv(enabled: bool) {
    BATCHED.set(enabled);
}

/// Whether the batch-innermost direct convolutions may be used (see [`set_batched_conv`]).
pub fn batched_conv_enabled() -> bool {
    BATCHED.enabled()
}

/// Whether [`conv2d`] and [`group_norm`] use the Flex fast kernels where they apply (always
/// `false` without the crate feature `flex`).
pub fn fast_kernels_enabled() -> bool {
    cfg!(feature = "flex") && FAST.enabled()
}

/// Whether backend `B` gets the fast kernels (`Flex` or `Autodiff<Flex>`, feature `flex`,
/// not switched off) for f32 tensors.
pub fn fast_kernels_apply<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        fast_kernels_enabled() && flex::supported::<B>()
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// `conv.forward(x)`, through the Flex kernel where it applies.
///
/// # Shapes
///
/// - `x`: `[batch, channels_in, h, w]`
/// - output: `[batch, channels_out, h_out, w_out]`
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(geom) = fast_conv_geometry(conv, &x)
        && let Some(bias) = conv.bias.as_ref().map(|b| b.val())
    {
        let weight = conv.weight.val();
        if weight.dtype() == x.dtype() && bias.dtype() == x.dtype() {
            return flex::conv2d(x, weight, bias, geom, flex::ConvAdd::None);
        }
    }
    conv.forward(x)
}

/// `conv.forward(x) + shift` with `shift` broadcast over the output positions (a residual
/// block's time embedding), the addition fused into the Flex kernel's output pass where it
/// applies.
///
/// # Shapes
///
/// - `x`: `[batch, channels_in, h, w]`
/// - `shift`: `[batch, channels_out]`
/// - output: `[batch, channels_out, h_out, w_out]`
pub fn conv2d_shifted<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    shift: Tensor<B, 2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(geom) = fast_conv_geometry(conv, &x)
        && let Some(bias) = conv.bias.as_ref().map(|b| b.val())
    {
        let weight = conv.weight.val();
        let dtypes = [weight.dtype(), bias.dtype(), shift.dtype()];
        if dtypes.iter().all(|&d| d == x.dtype()) && shift.dims() == [geom.n, geom.co] {
            return flex::conv2d(x, weight, bias, geom, flex::ConvAdd::Shift(shift));
        }
    }
    let [n, c] = shift.dims();
    conv.forward(x) + shift.reshape([n, c, 1, 1])
}

/// `conv.forward(x) + residual`, the addition fused into the Flex kernel's output pass where
/// it applies.
///
/// # Shapes
///
/// - `x`: `[batch, channels_in, h, w]`
/// - `residual`, output: `[batch, channels_out, h_out, w_out]`
pub fn conv2d_residual<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    residual: Tensor<B, 4>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(geom) = fast_conv_geometry(conv, &x)
        && let Some(bias) = conv.bias.as_ref().map(|b| b.val())
    {
        let weight = conv.weight.val();
        let dtypes = [weight.dtype(), bias.dtype(), residual.dtype()];
        if dtypes.iter().all(|&d| d == x.dtype())
            && residual.dims() == [geom.n, geom.co, geom.oh, geom.ow]
        {
            return flex::conv2d(x, weight, bias, geom, flex::ConvAdd::Residual(residual));
        }
    }
    conv.forward(x) + residual
}

/// `Tensor::cat(vec![a, b], 1)`: the channels of `b` after those of `a`. On Flex the
/// gradients come back contiguous (Burn's are strided views of the output gradient, which
/// later gradient sums walk element by element).
///
/// # Shapes
///
/// - `a`: `[batch, ca, h, w]`, `b`: `[batch, cb, h, w]`
/// - output: `[batch, ca + cb, h, w]`
pub fn cat_channels<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    {
        let ([n, _, h, w], [nb, _, hb, wb]) = (a.dims(), b.dims());
        if fast_kernels_apply::<B>()
            && a.dtype() == burn::tensor::DType::F32
            && b.dtype() == a.dtype()
            && (n, h, w) == (nb, hb, wb)
        {
            return flex::cat_channels(a, b);
        }
    }
    Tensor::cat(vec![a, b], 1)
}

/// The geometry of `conv` applied to `x` if the fast kernel serves it.
#[cfg(feature = "flex")]
fn fast_conv_geometry<B: Backend>(conv: &Conv2d<B>, x: &Tensor<B, 4>) -> Option<conv::ConvGeom> {
    use burn::tensor::DType;
    if !fast_kernels_apply::<B>()
        || conv.groups != 1
        || conv.dilation != [1, 1]
        || x.dtype() != DType::F32
    {
        return None;
    }
    let [n, ci, h, w] = x.dims();
    let [co, wci, kh, kw] = conv.weight.dims();
    let [sh, sw] = conv.stride;
    if wci != ci || sh == 0 || sw == 0 {
        // Let Burn report the shape error.
        return None;
    }
    // `Same` (computed padding) is left to Burn; the U-Net uses explicit padding.
    let (pt, pl, pb, pr) = match conv.padding {
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        PaddingConfig2d::Same => return None,
    };
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    if hp < kh || wp < kw {
        return None;
    }
    let (oh, ow) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
    Some(conv::ConvGeom {
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
    })
}

/// softmax(q kᵀ / √d) v, Burn's `attention(q, k, v, None, None, default options)`, through
/// the Flex kernel with its own backward where it applies.
///
/// # Shapes
///
/// - `q`, `k`, `v`: `[batch, heads, n, d]`
/// - output: `[batch, heads, n, d]`
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if fast_kernels_apply::<B>()
        && q.dtype() == burn::tensor::DType::F32
        && k.dtype() == q.dtype()
        && v.dtype() == q.dtype()
        && k.dims() == q.dims()
        && v.dims() == q.dims()
    {
        let [b, h, n, d] = q.dims();
        return flex::attention(
            q,
            k,
            v,
            attention::AttnGeom {
                bh: b * h,
                n,
                d,
                cf: false,
            },
        );
    }
    burn::tensor::module::attention(q, k, v, None, None, Default::default())
}

/// Multi-head attention over the `h·w` positions of channels-first feature maps: the
/// channels of `q`, `k` and `v` are `heads` heads of `c / heads` channels each, and the output
/// is laid out like them. Equal to [`attention`] of the maps read as `[batch, heads, h·w,
/// c / heads]` and written back; on Flex the kernel reads and writes the channels-first
/// layout itself, so an attention block needs no transposes (Burn copies strided views
/// element by element on one thread).
///
/// # Shapes
///
/// - `q`, `k`, `v`: `[batch, channels, h, w]`, `channels` a multiple of `heads`
/// - output: `[batch, channels, h, w]`
pub fn attention_channels_first<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    heads: usize,
) -> Tensor<B, 4> {
    let [b, c, h, w] = q.dims();
    let (n, d) = (h * w, c / heads.max(1));
    #[cfg(feature = "flex")]
    if fast_kernels_apply::<B>()
        && heads > 0
        && c % heads == 0
        && q.dtype() == burn::tensor::DType::F32
        && k.dtype() == q.dtype()
        && v.dtype() == q.dtype()
        && k.dims() == q.dims()
        && v.dims() == q.dims()
    {
        let geom = attention::AttnGeom {
            bh: b * heads,
            n,
            d,
            cf: true,
        };
        return flex::attention(q, k, v, geom);
    }
    let split = |t: Tensor<B, 4>| t.reshape([b, heads, d, n]).swap_dims(2, 3);
    attention(split(q), split(k), split(v))
        .swap_dims(2, 3)
        .reshape([b, c, h, w])
}

/// `linear` applied to the channels of `x` at every position (a 1×1 convolution whose
/// weight is the transpose of `linear`'s), plus `residual` when given: `linear.forward` of
/// the channels-last view, moved back to channels-first. On Flex it runs the 1×1
/// convolution kernel (the residual fused into its output pass) on `x` as it is laid out.
///
/// # Shapes
///
/// - `x`: `[batch, d_input, h, w]`
/// - `residual`, output: `[batch, d_output, h, w]`
pub fn linear_channels_first<B: Backend>(
    linear: &Linear<B>,
    x: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    {
        let [n, ci, h, w] = x.dims();
        let [wci, co] = linear.weight.dims();
        if fast_kernels_apply::<B>()
            && wci == ci
            && x.dtype() == burn::tensor::DType::F32
            && let Some(bias) = linear.bias.as_ref().map(|b| b.val())
        {
            let weight = linear.weight.val();
            let dtypes_agree = weight.dtype() == x.dtype()
                && bias.dtype() == x.dtype()
                && residual.as_ref().is_none_or(|r| r.dtype() == x.dtype());
            if dtypes_agree && residual.as_ref().is_none_or(|r| r.dims() == [n, co, h, w]) {
                let geom = conv::ConvGeom {
                    n,
                    ci,
                    h,
                    w,
                    co,
                    kh: 1,
                    kw: 1,
                    sh: 1,
                    sw: 1,
                    pt: 0,
                    pl: 0,
                    oh: h,
                    ow: w,
                };
                // [co, ci, 1, 1]: one copy of the (small) weight, which autodiff undoes.
                let weight = weight.transpose().reshape([co, ci, 1, 1]);
                let add = residual.map_or(flex::ConvAdd::None, flex::ConvAdd::Residual);
                return flex::conv2d(x, weight, bias, geom, add);
            }
        }
    }
    let y = linear
        .forward(x.permute([0, 2, 3, 1]))
        .permute([0, 3, 1, 2]);
    match residual {
        Some(r) => y + r,
        None => y,
    }
}

/// `norm.forward(x)`, then SiLU if `silu`, through the fused Flex kernel where it applies.
///
/// # Shapes
///
/// - `x`: `[batch, channels, h, w]`
/// - output: same as `x`
pub fn group_norm<B: Backend>(
    norm: &GroupNorm<B>,
    x: Tensor<B, 4>,
    silu_after: bool,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(geom) = fast_norm_geometry(norm, &x, silu_after)
        && let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta)
    {
        let (gamma, beta) = (gamma.val(), beta.val());
        if gamma.dtype() == x.dtype() && beta.dtype() == x.dtype() {
            return flex::group_norm(x, gamma, beta, geom);
        }
    }
    let y = norm.forward(x);
    if silu_after { silu(y) } else { y }
}

#[cfg(feature = "flex")]
fn fast_norm_geometry<B: Backend>(
    norm: &GroupNorm<B>,
    x: &Tensor<B, 4>,
    silu: bool,
) -> Option<norm::NormGeom> {
    use burn::tensor::DType;
    let [n, c, h, w] = x.dims();
    let usable = fast_kernels_apply::<B>()
        && norm.affine
        && x.dtype() == DType::F32
        && c == norm.num_channels
        && norm.num_groups > 0
        && c % norm.num_groups == 0;
    usable.then_some(norm::NormGeom {
        n,
        c,
        hw: h * w,
        groups: norm.num_groups,
        eps: norm.epsilon,
        silu,
    })
}

/// The scalars of one Adam update ([`adam_update`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate α.
    pub lr: f64,
    /// β₁, the decay of the first moment.
    pub beta_1: f32,
    /// β₂, the decay of the second moment.
    pub beta_2: f32,
    /// ε, added to √v̂.
    pub epsilon: f32,
    /// The number of updates including this one (1 for the first): the `t` of the bias
    /// corrections 1 − βᵗ (0 counts as 1).
    pub time: usize,
}

impl AdamStep {
    /// Burn's bias-corrected scalars of this step, in f32 as Burn computes them:
    /// `(√(1 − β₂ᵗ) / (1 − β₁ᵗ), ε·√(1 − β₂ᵗ))`, the factor of `m` and the ε added to `√v`.
    fn corrections(&self) -> (f32, f32) {
        let time = self.time.clamp(1, i32::MAX as usize) as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(time)).sqrt();
        (
            bias_correction2_sqrt / (1.0 - self.beta_1.powi(time)),
            self.epsilon * bias_correction2_sqrt,
        )
    }
}

/// One Adam update of `param` from `grad` with the moments of the previous update (`None`
/// before the first): `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`,
/// `param ← param − α · m̂ / (√v̂ + ε)` with `m̂ = m / (1 − β₁ᵗ)`, `v̂ = v / (1 − β₂ᵗ)`. Returns
/// `(param, m, v)`.
///
/// The numbers are those of Burn's `burn::optim::Adam` (amsgrad off, no weight decay), bit for
/// bit: the same f32 operations in the same order, with ε scaled by `√(1 − β₂ᵗ)` as Burn does.
/// On `Flex` with f32 tensors of one shape, one parallel pass updates every element (in place
/// where the tensors own their storage); elsewhere Burn's tensor ops compute it, op for op as
/// Burn's `Adam`.
///
/// # Shapes
///
/// - `param`, `grad`, the moments and the outputs: one shape
pub fn adam_update<B: Backend, const D: usize>(
    step: AdamStep,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    #[cfg(feature = "flex")]
    {
        use burn::tensor::DType;
        let dims = param.dims();
        let fits = |t: &Tensor<B, D>| t.dtype() == DType::F32 && t.dims() == dims;
        if fast_kernels_enabled()
            && flex::plain::<B>()
            && fits(&param)
            && fits(&grad)
            && moments.as_ref().is_none_or(|(m, v)| fits(m) && fits(v))
        {
            return flex::adam(adam::Coefs::new(&step), param, grad, moments);
        }
    }
    // Burn's `AdaptiveMomentum::transform` and `Adam::step`, op for op.
    let (b1, b2) = (step.beta_1, step.beta_2);
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(b1).add(grad.clone().mul_scalar(1.0 - b1)),
            v.mul_scalar(b2).add(grad.square().mul_scalar(1.0 - b2)),
        ),
        None => (
            grad.clone().mul_scalar(1.0 - b1),
            grad.square().mul_scalar(1.0 - b2),
        ),
    };
    let (combined, epsilon) = step.corrections();
    let update = m
        .clone()
        .mul_scalar(combined)
        .div(v.clone().sqrt().add_scalar(epsilon));
    (param - update.mul_scalar(step.lr), m, v)
}

/// One step of an exponential moving average of a parameter: `ema·decay + model·(1 − decay)`.
///
/// The numbers are those of `ema.mul_scalar(decay) + model.mul_scalar(1.0 - decay)` on every
/// backend, bit for bit; on `Flex` with f32 tensors of one shape, one parallel pass computes
/// it (in place where `ema` owns its storage) instead of three serial ones.
///
/// # Shapes
///
/// - `ema`, `model`, output: one shape
pub fn ema_update<B: Backend, const D: usize>(
    ema: Tensor<B, D>,
    model: Tensor<B, D>,
    decay: f64,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    {
        use burn::tensor::DType;
        if fast_kernels_enabled()
            && flex::plain::<B>()
            && ema.dtype() == DType::F32
            && model.dtype() == DType::F32
            && ema.dims() == model.dims()
        {
            return flex::ema(ema, model, decay);
        }
    }
    ema.mul_scalar(decay) + model.mul_scalar(1.0 - decay)
}
