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

/// The output `y` of a three-input op as a `B` tensor; under autodiff with all three inputs
/// tracked by the graph, recorded with `op`'s backward and `state`.
fn record<B: Backend, O: Backward<Flex, 3>>(
    op: O,
    inputs: [Option<FloatTensor<Ad>>; 3],
    state: O::State,
    y: FlexTensor,
) -> Tensor<B, 4> {
    match inputs {
        [Some(a), Some(b), Some(c)] => {
            let nodes = [a.node.clone(), b.node.clone(), c.node.clone()];
            let out = match op
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            wrap(cast::<FloatTensor<Ad>, FloatTensor<B>>(out))
        }
        _ => wrap(cast::<FlexTensor, FloatTensor<B>>(y)),
    }
}

// ---------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ConvBackward;

#[derive(Clone, Debug)]
struct ConvState {
    x: FlexTensor,
    w: FlexTensor,
    geom: ConvGeom,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let ConvState { x, w, geom: g } = ops.state;
        let need = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let (dx, dw, db) = conv::conv2d_backward(&g, data(&x), data(&w), data(&dy), need);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, [g.n, g.ci, g.h, g.w]));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, [g.co, g.ci, g.kh, g.kw]));
        }
        if let (Some(node), Some(db)) = (node_b, db) {
            grads.register::<Flex>(node.id, tensor(db, [g.co]));
        }
    }
}

/// Convolution with bias on `Flex` / `Autodiff<Flex>` (f32 only; checked by the caller).
pub(super) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    geom: ConvGeom,
) -> Tensor<B, 4> {
    let (xf, x_ad) = split(x);
    let (wf, w_ad) = split(weight);
    let (bf, b_ad) = split(bias);
    let y = conv::conv2d_forward(&geom, data(&xf), data(&wf), data(&bf));
    let y = tensor(y, [geom.n, geom.co, geom.oh, geom.ow]);
    let state = ConvState { x: xf, w: wf, geom };
    record(ConvBackward, [x_ad, w_ad, b_ad], state, y)
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
