//! The Flex fast path: Burn tensors of `Flex` / `Autodiff<Flex>` are unwrapped to their
//! primitives (the backend is recognised by `TypeId`, so library code keeps its plain
//! `B: Backend` bound), run through [`super::conv`], [`super::norm`] and [`super::attention`], and wrapped back; under autodiff the
//! op is recorded with its own backward step (Burn's backend-extension mechanism:
//! [`Backward`], [`OpsKind`]).

use core::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};

use super::adam;
use super::attention::{self, AttnGeom};
use super::conv::{self, ConvGeom};
use super::norm::{self, NormGeom};

type Ad = Autodiff<Flex>;

/// Which fast path, if any, serves backend `B`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Autodiff,
}

fn kind<B: Backend>() -> Option<Kind> {
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Flex>() {
        Some(Kind::Plain)
    } else if id == TypeId::of::<Ad>() {
        Some(Kind::Autodiff)
    } else {
        None
    }
}

/// Whether `B` is `Flex` or `Autodiff<Flex>`.
pub(super) fn supported<B: Backend>() -> bool {
    kind::<B>().is_some()
}

/// Moves `a` into type `T`; only called after `TypeId` showed the two types are one.
fn cast<A: 'static, T: 'static>(a: A) -> T {
    let mut slot = Some(a);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .expect("kernels::flex::cast: types checked by TypeId beforehand")
}

fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn wrap<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// The tensor's elements as a contiguous f32 slice (copying only if it is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn data(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("kernels::flex: an f32 tensor made contiguous beforehand")
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// `Flex` tensors of any float backend `B` that `kind` recognised, as plain Flex primitives
/// plus, under autodiff, the graph handles.
fn split<B: Backend, const D: usize>(t: Tensor<B, D>) -> (FlexTensor, Option<FloatTensor<Ad>>) {
    match kind::<B>() {
        Some(Kind::Plain) => (contiguous(cast(primitive(t))), None),
        Some(Kind::Autodiff) => {
            let ad: FloatTensor<Ad> = cast(primitive(t));
            (contiguous(ad.primitive.clone()), Some(ad))
        }
        None => unreachable!("kernels::flex called for an unsupported backend"),
    }
}

/// The output `y` of an `N`-input op as a `B` tensor; under autodiff (every input then has a
/// graph handle), recorded with `op`'s backward and `state` when any input is tracked.
fn record<B: Backend, O: Backward<Flex, N>, const N: usize>(
    op: O,
    inputs: [Option<FloatTensor<Ad>>; N],
    state: O::State,
    y: FlexTensor,
) -> Tensor<B, 4> {
    if inputs.iter().all(Option::is_some) {
        let nodes = inputs.map(|t| t.map(|t| t.node).expect("checked: every input is Some"));
        let out = match op
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        wrap(cast::<FloatTensor<Ad>, FloatTensor<B>>(out))
    } else {
        wrap(cast::<FlexTensor, FloatTensor<B>>(y))
    }
}

// ---------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ConvBackward;

/// A convolution whose output pass also added a fourth input (see [`conv::Add`]).
#[derive(Debug)]
struct ConvAddBackward;

/// What a recorded convolution added to its output besides the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddKind {
    None,
    Shift,
    Residual,
}

#[derive(Clone, Debug)]
struct ConvState {
    x: FlexTensor,
    w: FlexTensor,
    geom: ConvGeom,
    add: AddKind,
}

/// Adds `grad` (if computed) to the gradient of `node` (if tracked).
macro_rules! register {
    ($grads:expr, $node:expr, $grad:expr) => {
        if let (Some(node), Some(grad)) = ($node, $grad) {
            $grads.register::<Flex>(node.id, grad);
        }
    };
}

/// The gradients `[dx, dW, db, d(added input)]` of a convolution, those asked for by `need`.
fn conv_grads(need: [bool; 4], dy: FlexTensor, state: ConvState) -> [Option<FlexTensor>; 4] {
    let ConvState { x, w, geom: g, add } = state;
    let (dx, dw, db) = conv::conv2d_backward(
        &g,
        data(&x),
        data(&w),
        data(&dy),
        [need[0], need[1], need[2]],
    );
    let extra = match (need[3], add) {
        (true, AddKind::Shift) => Some(tensor(conv::channel_sums(&g, data(&dy)), [g.n, g.co])),
        (true, AddKind::Residual) => Some(dy),
        _ => None,
    };
    [
        dx.map(|v| tensor(v, [g.n, g.ci, g.h, g.w])),
        dw.map(|v| tensor(v, [g.co, g.ci, g.kh, g.kw])),
        db.map(|v| tensor(v, [g.co])),
        extra,
    ]
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw, nb] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let need = [nx.is_some(), nw.is_some(), nb.is_some(), false];
        let [dx, dw, db, _] = conv_grads(need, dy, ops.state);
        register!(grads, nx, dx);
        register!(grads, nw, dw);
        register!(grads, nb, db);
    }
}

impl Backward<Flex, 4> for ConvAddBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw, nb, ne] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let need = [nx.is_some(), nw.is_some(), nb.is_some(), ne.is_some()];
        let [dx, dw, db, de] = conv_grads(need, dy, ops.state);
        register!(grads, nx, dx);
        register!(grads, nw, dw);
        register!(grads, nb, db);
        register!(grads, ne, de);
    }
}

/// What [`conv2d`] adds to its output besides the bias.
pub(super) enum ConvAdd<B: Backend> {
    /// Nothing.
    None,
    /// `[n, co]`, broadcast over the output positions.
    Shift(Tensor<B, 2>),
    /// `[n, co, oh, ow]`.
    Residual(Tensor<B, 4>),
}

/// Convolution with bias (plus `add`) on `Flex` / `Autodiff<Flex>` (f32 only, `add` of the
/// right shape; checked by the caller).
pub(super) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    geom: ConvGeom,
    add: ConvAdd<B>,
) -> Tensor<B, 4> {
    let (xf, x_ad) = split(x);
    let (wf, w_ad) = split(weight);
    let (bf, b_ad) = split(bias);
    let (kind, extra) = match add {
        ConvAdd::None => (AddKind::None, None),
        ConvAdd::Shift(s) => (AddKind::Shift, Some(split(s))),
        ConvAdd::Residual(r) => (AddKind::Residual, Some(split(r))),
    };
    let add_data = match (&kind, &extra) {
        (AddKind::Shift, Some((t, _))) => conv::Add::Shift(data(t)),
        (AddKind::Residual, Some((t, _))) => conv::Add::Residual(data(t)),
        _ => conv::Add::None,
    };
    let y = conv::conv2d_forward(&geom, data(&xf), data(&wf), data(&bf), add_data);
    let y = tensor(y, [geom.n, geom.co, geom.oh, geom.ow]);
    let state = ConvState {
        x: xf,
        w: wf,
        geom,
        add: kind,
    };
    match extra {
        None => record(ConvBackward, [x_ad, w_ad, b_ad], state, y),
        Some((_, e_ad)) => record(ConvAddBackward, [x_ad, w_ad, b_ad, e_ad], state, y),
    }
}

// ---------------------------------------------------------------------------------------
// Channel concatenation
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct CatBackward;

#[derive(Clone, Copy, Debug)]
struct CatState {
    n: usize,
    /// Elements per image of the first and the second input.
    len_a: usize,
    len_b: usize,
    /// Their shapes' channel counts and the shared spatial size.
    ca: usize,
    cb: usize,
    h: usize,
    w: usize,
}

impl Backward<Flex, 2> for CatBackward {
    type State = CatState;

    fn backward(self, ops: Ops<CatState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (da, db) = super::layout::split_channels(data(&dy), s.n, s.len_a, s.len_b);
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, tensor(da, [s.n, s.ca, s.h, s.w]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(db, [s.n, s.cb, s.h, s.w]));
        }
    }
}

/// `cat([a, b], 1)` for `[n, c, h, w]` tensors on `Flex` / `Autodiff<Flex>`, with contiguous
/// gradients (Burn's narrows the output gradient into strided views, which later gradient
/// sums then walk element by element). f32, matching shapes: checked by the caller.
pub(super) fn cat_channels<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, ca, h, w] = a.dims();
    let cb = b.dims()[1];
    let (af, a_ad) = split(a);
    let (bf, b_ad) = split(b);
    let s = CatState {
        n,
        len_a: ca * h * w,
        len_b: cb * h * w,
        ca,
        cb,
        h,
        w,
    };
    let y = super::layout::cat_channels(data(&af), data(&bf), n, s.len_a, s.len_b);
    let y = tensor(y, [n, ca + cb, h, w]);
    record(CatBackward, [a_ad, b_ad], s, y)
}

// ---------------------------------------------------------------------------------------
// GroupNorm (+ SiLU)
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct NormBackward;

#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    geom: NormGeom,
}

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<NormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_g, node_b] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (dx, dgamma, dbeta) = norm::group_norm_backward(
            &s.geom,
            data(&s.x),
            data(&dy),
            data(&s.gamma),
            data(&s.beta),
            &s.mean,
            &s.rstd,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, s.x.shape()));
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, tensor(dgamma, [s.geom.c]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(dbeta, [s.geom.c]));
        }
    }
}

/// GroupNorm with affine parameters and an optional fused SiLU, on `Flex` /
/// `Autodiff<Flex>` (f32 only; checked by the caller).
pub(super) fn group_norm<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    geom: NormGeom,
) -> Tensor<B, 4> {
    let (xf, x_ad) = split(x);
    let (gf, g_ad) = split(gamma);
    let (bf, b_ad) = split(beta);
    let (y, mean, rstd) = norm::group_norm_forward(&geom, data(&xf), data(&gf), data(&bf));
    let y = tensor(y, xf.shape());
    let state = NormState {
        x: xf,
        gamma: gf,
        beta: bf,
        mean,
        rstd,
        geom,
    };
    record(NormBackward, [x_ad, g_ad, b_ad], state, y)
}

// ---------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct AttnBackward;

#[derive(Clone, Debug)]
struct AttnState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// The softmax probabilities, `[bh, n, n]`.
    s: Vec<f32>,
    geom: AttnGeom,
}

impl Backward<Flex, 3> for AttnBackward {
    type State = AttnState;

    fn backward(self, ops: Ops<AttnState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let dout = contiguous(grads.consume::<Flex>(&ops.node));
        let st = ops.state;
        let (dq, dk, dv) = attention::attention_backward(
            &st.geom,
            data(&st.q),
            data(&st.k),
            data(&st.v),
            &st.s,
            data(&dout),
        );
        for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, st.q.shape()));
            }
        }
    }
}

/// softmax(Q Kᵀ / √d) V for `[batch, heads, n, d]` tensors on `Flex` / `Autodiff<Flex>`
/// (f32, equal shapes; checked by the caller).
pub(super) fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    geom: AttnGeom,
) -> Tensor<B, 4> {
    let (qf, q_ad) = split(q);
    let (kf, k_ad) = split(k);
    let (vf, v_ad) = split(v);
    let (o, s) = attention::attention_forward(&geom, data(&qf), data(&kf), data(&vf));
    let o = tensor(o, qf.shape());
    let state = AttnState {
        q: qf,
        k: kf,
        v: vf,
        s,
        geom,
    };
    record(AttnBackward, [q_ad, k_ad, v_ad], state, o)
}

// ---------------------------------------------------------------------------------------
// Adam
// ---------------------------------------------------------------------------------------

/// Whether `B` is plain `Flex` (the optimizer works on the inner backend's tensors).
pub(super) fn plain<B: Backend>() -> bool {
    kind::<B>() == Some(Kind::Plain)
}

/// `t` itself when it owns its contiguous storage from offset 0, else a contiguous copy made
/// by the pool: a tensor whose storage can be written in place.
fn writable(t: FlexTensor) -> FlexTensor {
    let len = t.layout().num_elements();
    if t.is_unique() && t.layout().contiguous_offsets() == Some((0, len)) {
        return t;
    }
    let src = contiguous(t);
    tensor(super::buf::copied(data(&src)), src.shape())
}

/// [`super::adam::update`] on `Flex` tensors of `B` (plain `Flex`, f32, one shape; checked by
/// the caller): the updated parameter and moments, written in place where the tensors own
/// their storage.
pub(super) fn adam<B: Backend, const D: usize>(
    coefs: adam::Coefs,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let flex = |t: Tensor<B, D>| -> FlexTensor { cast(primitive(t)) };
    let mut p = writable(flex(param));
    let g = contiguous(flex(grad));
    let len = p.layout().num_elements();
    let first = moments.is_none();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (writable(flex(m)), writable(flex(v))),
        // Ignored on the first step (see `adam::update`), but they must be initialised.
        None => (
            tensor(super::buf::zeroed(len), p.shape()),
            tensor(super::buf::zeroed(len), p.shape()),
        ),
    };
    adam::update(
        &coefs,
        &mut p.storage_mut::<f32>()[..len],
        data(&g),
        &mut m.storage_mut::<f32>()[..len],
        &mut v.storage_mut::<f32>()[..len],
        first,
    );
    let back = |t: FlexTensor| -> Tensor<B, D> { wrap(cast::<FlexTensor, FloatTensor<B>>(t)) };
    (back(p), back(m), back(v))
}

/// [`super::adam::ema`] on `Flex` tensors of `B` (plain `Flex`, f32, one shape; checked by the
/// caller): the moved average, written in place where `ema` owns its storage.
pub(super) fn ema<B: Backend, const D: usize>(
    ema: Tensor<B, D>,
    model: Tensor<B, D>,
    decay: f64,
) -> Tensor<B, D> {
    let mut e = writable(cast(primitive(ema)));
    let m = contiguous(cast(primitive(model)));
    let len = e.layout().num_elements();
    adam::ema(&mut e.storage_mut::<f32>()[..len], data(&m), decay);
    wrap(cast::<FlexTensor, FloatTensor<B>>(e))
}
