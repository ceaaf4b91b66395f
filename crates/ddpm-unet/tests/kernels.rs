//! The Flex fast kernels (`ddpm_unet::kernels`) against Burn's own ops on random inputs:
//! forward values, and gradients of x, the weights and the biases under `Autodiff<Flex>`
//! (convolutions, GroupNorm + SiLU) or of q, k and v (attention). On a CPU with AVX-512 the
//! stride-1 convolutions run the direct kernels; `src/kernels/conv.rs` also tests im2col +
//! gemm and the direct kernels separately against f64 loops.

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use ddpm_unet::kernels;

type Ad = Autodiff<Flex>;

/// Uniform values in [−1, 1) from a local generator (not Burn's global RNG, which the test
/// threads share), so every call with the same seed gives the same tensor.
fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let len = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..len)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            bits as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Max |a − b| / (1 + max|b|) over two tensors of equal shape.
fn rel_err<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.into_data().to_vec::<f32>().unwrap();
    let b = b.into_data().to_vec::<f32>().unwrap();
    let scale = 1.0 + b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn same_values<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, what: &str) {
    let err = rel_err(a, b);
    assert!(err < 2e-5, "{what}: relative error {err:e}");
}

/// A conv on backend `B` with random weights and bias (same values on every backend).
fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: PaddingConfig2d,
) -> Conv2d<B> {
    let device = Default::default();
    let mut conv = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(padding)
        .init::<B>(&device);
    let w: Tensor<Flex, 4> = random([cout, cin, k, k], 11);
    let b: Tensor<Flex, 1> = random([cout], 12);
    conv.weight = Param::from_tensor(Tensor::from_data(w.into_data(), &device));
    conv.bias = Some(Param::from_tensor(Tensor::from_data(
        b.into_data(),
        &device,
    )));
    conv
}

fn norm<B: Backend>(groups: usize, channels: usize) -> GroupNorm<B> {
    let device = Default::default();
    let mut norm = GroupNormConfig::new(groups, channels)
        .with_epsilon(1e-6)
        .init::<B>(&device);
    let g: Tensor<Flex, 1> = random([channels], 21);
    let b: Tensor<Flex, 1> = random([channels], 22);
    norm.gamma = Some(Param::from_tensor(Tensor::from_data(
        g.into_data(),
        &device,
    )));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(
        b.into_data(),
        &device,
    )));
    norm
}

/// The conv shapes of the U-Nets: 3×3 same (the direct kernels where the CPU has AVX-512),
/// 1×1 shortcut, stride-2 down-sampling with DDPM's (0, 0, 1, 1) padding and with symmetric
/// padding; batch 1 (parallel inside an image) and 3 (batch-parallel), odd sizes, channel
/// counts off the kernels' blocks and a K = 9·20 split into two blocks; a valid 3×3; a
/// 128 → 130-channel same 3×3 (the Winograd kernels).
fn conv_cases() -> Vec<(usize, usize, usize, usize, PaddingConfig2d, [usize; 4])> {
    use PaddingConfig2d::Explicit;
    vec![
        (5, 7, 3, 1, Explicit(1, 1, 1, 1), [3, 5, 9, 7]),
        (5, 7, 3, 1, Explicit(1, 1, 1, 1), [1, 5, 8, 8]),
        (20, 19, 3, 1, Explicit(1, 1, 1, 1), [2, 20, 6, 11]),
        (3, 5, 3, 1, PaddingConfig2d::Valid, [2, 3, 7, 6]),
        (6, 4, 1, 1, PaddingConfig2d::Valid, [3, 6, 5, 6]),
        (4, 4, 3, 2, Explicit(0, 0, 1, 1), [2, 4, 8, 8]),
        (4, 6, 3, 2, Explicit(1, 1, 1, 1), [2, 4, 7, 9]),
        (128, 130, 3, 1, Explicit(1, 1, 1, 1), [2, 128, 9, 8]),
        // A batch of 16: the direct kernels' batch-innermost grid.
        (3, 5, 3, 1, Explicit(1, 1, 1, 1), [16, 3, 7, 7]),
    ]
}

#[test]
fn fast_path_is_taken_on_flex() {
    assert!(kernels::fast_kernels_enabled());
    assert!(kernels::fast_kernels_apply::<Flex>());
    assert!(kernels::fast_kernels_apply::<Ad>());
}

#[test]
fn conv2d_forward_matches_burn() {
    for (cin, cout, k, stride, padding, shape) in conv_cases() {
        let c = conv::<Flex>(cin, cout, k, stride, padding.clone());
        let x: Tensor<Flex, 4> = random(shape, 3);
        let fast = kernels::conv2d(&c, x.clone());
        let burn = c.forward(x);
        same_values(
            fast,
            burn,
            &format!("conv {cin}->{cout} k{k} s{stride} {padding:?} {shape:?}"),
        );
    }
}

/// Gradients of Σ y·r (r random) for x, the weight and the bias.
fn conv_grads(
    c: &Conv2d<Ad>,
    x: Tensor<Flex, 4>,
    fast: bool,
) -> (
    Tensor<Flex, 4>,
    Tensor<Flex, 4>,
    Tensor<Flex, 4>,
    Tensor<Flex, 1>,
) {
    let x = Tensor::<Ad, 4>::from_inner(x).require_grad();
    let y = if fast {
        kernels::conv2d(c, x.clone())
    } else {
        c.forward(x.clone())
    };
    let r: Tensor<Ad, 4> = Tensor::from_inner(random(y.dims(), 5));
    let grads = (y.clone() * r).sum().backward();
    (
        y.inner(),
        x.grad(&grads).unwrap(),
        c.weight.val().grad(&grads).unwrap(),
        c.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
    )
}

#[test]
fn conv2d_gradients_match_burn() {
    for (cin, cout, k, stride, padding, shape) in conv_cases() {
        let c = conv::<Ad>(cin, cout, k, stride, padding.clone());
        let x: Tensor<Flex, 4> = random(shape, 4);
        let (y1, dx1, dw1, db1) = conv_grads(&c, x.clone(), true);
        let (y2, dx2, dw2, db2) = conv_grads(&c, x, false);
        let what = format!("conv {cin}->{cout} k{k} s{stride} {padding:?} {shape:?}");
        same_values(y1, y2, &format!("{what}: y"));
        same_values(dx1, dx2, &format!("{what}: dx"));
        same_values(dw1, dw2, &format!("{what}: dW"));
        same_values(db1, db2, &format!("{what}: db"));
    }
}

#[test]
fn conv2d_without_input_gradient() {
    // conv_in: x is data (no grad); only the parameters' gradients are computed.
    let c = conv::<Ad>(3, 4, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1));
    let x = Tensor::<Ad, 4>::from_inner(random([2, 3, 6, 6], 6));
    let y = kernels::conv2d(&c, x.clone());
    let grads = y.sum().backward();
    assert!(x.grad(&grads).is_none());
    let db = c.bias.as_ref().unwrap().val().grad(&grads).unwrap();
    // d(Σy)/db_o = number of output positions per channel, summed over the batch.
    let want =
        Tensor::<Flex, 1>::from_data(TensorData::new(vec![72f32; 4], [4]), &Default::default());
    same_values(db, want, "db of Σy");
}

#[test]
fn group_norm_forward_matches_burn() {
    for (groups, shape) in [(4, [2, 8, 5, 3]), (2, [1, 6, 4, 4]), (8, [3, 16, 1, 2])] {
        let n = norm::<Flex>(groups, shape[1]);
        for with_silu in [false, true] {
            let x: Tensor<Flex, 4> = random(shape, 7) * 3.0 + 1.5;
            let fast = kernels::group_norm(&n, x.clone(), with_silu);
            let burn = n.forward(x);
            let burn = if with_silu { silu(burn) } else { burn };
            same_values(
                fast,
                burn,
                &format!("group norm {groups} {shape:?} silu={with_silu}"),
            );
        }
    }
}

#[test]
fn group_norm_gradients_match_burn() {
    for (groups, shape) in [(4, [2, 8, 5, 3]), (2, [1, 6, 4, 4])] {
        let n = norm::<Ad>(groups, shape[1]);
        for with_silu in [false, true] {
            let run = |fast: bool| {
                let x = Tensor::<Ad, 4>::from_inner(random::<Flex, 4>(shape, 8) * 2.0 - 0.5)
                    .require_grad();
                let y = if fast {
                    kernels::group_norm(&n, x.clone(), with_silu)
                } else {
                    let y = n.forward(x.clone());
                    if with_silu { silu(y) } else { y }
                };
                let r: Tensor<Ad, 4> = Tensor::from_inner(random(shape, 9));
                let grads = (y.clone() * r).sum().backward();
                let gamma = n.gamma.as_ref().unwrap().val().grad(&grads).unwrap();
                let beta = n.beta.as_ref().unwrap().val().grad(&grads).unwrap();
                (y.inner(), x.grad(&grads).unwrap(), gamma, beta)
            };
            let (y1, dx1, dg1, db1) = run(true);
            let (y2, dx2, dg2, db2) = run(false);
            let what = format!("group norm {groups} {shape:?} silu={with_silu}");
            same_values(y1, y2, &format!("{what}: y"));
            same_values(dx1, dx2, &format!("{what}: dx"));
            same_values(dg1, dg2, &format!("{what}: dgamma"));
            same_values(db1, db2, &format!("{what}: dbeta"));
        }
    }
}

#[test]
fn fused_conv_additions_and_cat_match_burn() {
    use PaddingConfig2d::Explicit;
    // A stride-1 3×3 (the direct kernels) and a stride-2 one (im2col + gemm).
    for (stride, [oh, ow]) in [(1, [9, 7]), (2, [5, 4])] {
        let c = conv::<Ad>(5, 7, 3, stride, Explicit(1, 1, 1, 1));
        let x: Tensor<Flex, 4> = random([3, 5, 9, 7], 41);
        let shift: Tensor<Flex, 2> = random([3, 7], 42);
        let res: Tensor<Flex, 4> = random([3, 7, oh, ow], 43);
        let r: Tensor<Flex, 4> = random([3, 14, oh, ow], 44);
        let run = |fast: bool| {
            let x = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
            let s = Tensor::<Ad, 2>::from_inner(shift.clone()).require_grad();
            let res = Tensor::<Ad, 4>::from_inner(res.clone()).require_grad();
            let y = if fast {
                kernels::cat_channels(
                    kernels::conv2d_shifted(&c, x.clone(), s.clone()),
                    kernels::conv2d_residual(&c, x.clone(), res.clone()),
                )
            } else {
                Tensor::cat(
                    vec![
                        c.forward(x.clone()) + s.clone().reshape([3, 7, 1, 1]),
                        c.forward(x.clone()) + res.clone(),
                    ],
                    1,
                )
            };
            let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
            let w = c.weight.val().grad(&grads).unwrap();
            let b = c.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                s.grad(&grads).unwrap(),
                res.grad(&grads).unwrap(),
                w,
                b,
            )
        };
        let (y1, dx1, ds1, dr1, dw1, db1) = run(true);
        let (y2, dx2, ds2, dr2, dw2, db2) = run(false);
        let what = format!("stride {stride}");
        same_values(y1, y2, &format!("{what}: y"));
        same_values(dx1, dx2, &format!("{what}: dx"));
        same_values(ds1, ds2, &format!("{what}: dshift"));
        same_values(dr1, dr2, &format!("{what}: dresidual"));
        same_values(dw1, dw2, &format!("{what}: dW"));
        same_values(db1, db2, &format!("{what}: db"));
    }
}

#[test]
fn attention_matches_burn() {
    use burn::tensor::module::attention;
    // One head of the U-Nets' shape, two heads, a batch of three.
    for shape in [[1, 1, 49, 16], [2, 2, 9, 8], [3, 1, 5, 3]] {
        let q: Tensor<Flex, 4> = random(shape, 31);
        let k: Tensor<Flex, 4> = random(shape, 32);
        let v: Tensor<Flex, 4> = random(shape, 33);
        let burn = attention(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            None,
            Default::default(),
        );
        let fast = kernels::attention(q.clone(), k.clone(), v.clone());
        same_values(fast, burn, &format!("attention {shape:?}"));

        let run = |fast: bool| {
            let [q, k, v] =
                [&q, &k, &v].map(|t| Tensor::<Ad, 4>::from_inner(t.clone()).require_grad());
            let o = if fast {
                kernels::attention(q.clone(), k.clone(), v.clone())
            } else {
                attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    None,
                    None,
                    Default::default(),
                )
            };
            let r: Tensor<Ad, 4> = Tensor::from_inner(random(shape, 34));
            let grads = (o * r).sum().backward();
            [q, k, v].map(|t| t.grad(&grads).unwrap())
        };
        let (fast, burn) = (run(true), run(false));
        for ((a, b), name) in fast.into_iter().zip(burn).zip(["dq", "dk", "dv"]) {
            same_values(a, b, &format!("attention {shape:?}: {name}"));
        }
    }
}

/// The attention block written with Burn's ops in the `[batch, h·w, C]` layout (what
/// `Attention::forward` computed before it went channels-first).
fn attention_block_by_burn_ops<B: Backend>(
    block: &ddpm_unet::Attention<B>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let (heads, n) = (block.heads, h * w);
    let d = c / heads;
    let y = block
        .group_norm
        .forward(x.clone())
        .reshape([b, c, n])
        .swap_dims(1, 2);
    let split = |t: Tensor<B, 3>| t.reshape([b, n, heads, d]).swap_dims(1, 2);
    let q = split(block.to_q.forward(y.clone()));
    let k = split(block.to_k.forward(y.clone()));
    let v = split(block.to_v.forward(y));
    let o = burn::tensor::module::attention(q, k, v, None, None, Default::default())
        .swap_dims(1, 2)
        .reshape([b, n, c]);
    let o = block
        .to_out
        .forward(o)
        .swap_dims(1, 2)
        .reshape([b, c, h, w]);
    (x + o) / block.rescale_output_factor
}

#[test]
fn attention_block_matches_burn() {
    use ddpm_unet::AttentionConfig;
    // The MNIST presets' 64 channels at 7×7 (one head), and a batch of two with 2 and 4 heads.
    for (shape, heads, groups) in [
        ([1, 64, 7, 7], 1, 32),
        ([2, 8, 3, 3], 2, 2),
        ([2, 16, 4, 5], 4, 8),
    ] {
        let config = AttentionConfig::new(shape[1])
            .with_heads(heads)
            .with_groups(groups)
            .with_rescale_output_factor(if heads == 4 { 2.0 } else { 1.0 });
        let block = config.init::<Ad>(&Default::default());
        let x: Tensor<Flex, 4> = random(shape, 41);
        let r: Tensor<Ad, 4> = Tensor::from_inner(random(shape, 42));
        let run = |fast: bool| {
            let x = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
            let out = if fast {
                block.forward(x.clone())
            } else {
                attention_block_by_burn_ops(&block, x.clone())
            };
            let grads = (out.clone() * r.clone()).sum().backward();
            let mut got = vec![(
                "output".to_string(),
                out.inner().into_data().to_vec::<f32>().unwrap(),
            )];
            got.push((
                "dx".into(),
                x.grad(&grads).unwrap().into_data().to_vec().unwrap(),
            ));
            for (name, linear) in [
                ("to_q", &block.to_q),
                ("to_k", &block.to_k),
                ("to_v", &block.to_v),
                ("to_out", &block.to_out),
            ] {
                let bias = linear.bias.as_ref().unwrap();
                got.push((
                    format!("{name}.weight"),
                    linear
                        .weight
                        .grad(&grads)
                        .unwrap()
                        .into_data()
                        .to_vec()
                        .unwrap(),
                ));
                got.push((
                    format!("{name}.bias"),
                    bias.grad(&grads).unwrap().into_data().to_vec().unwrap(),
                ));
            }
            let norm = &block.group_norm;
            for (name, p) in [("gamma", &norm.gamma), ("beta", &norm.beta)] {
                got.push((
                    format!("group_norm.{name}"),
                    p.as_ref()
                        .unwrap()
                        .grad(&grads)
                        .unwrap()
                        .into_data()
                        .to_vec()
                        .unwrap(),
                ));
            }
            got
        };
        for ((name, fast), (_, burn)) in run(true).into_iter().zip(run(false)) {
            let scale = 1.0 + burn.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = fast
                .iter()
                .zip(&burn)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(
                err < 2e-5,
                "{shape:?}, {heads} heads: {name}: relative error {err:e}"
            );
        }
    }
}

#[test]
fn unsupported_settings_fall_back_to_burn() {
    // `Same` padding and a bias-free conv take Burn's path and still agree with it.
    let device = Default::default();
    let c = Conv2dConfig::new([3, 4], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init::<Flex>(&device);
    let x: Tensor<Flex, 4> = random([1, 3, 5, 5], 10);
    same_values(
        kernels::conv2d(&c, x.clone()),
        c.forward(x),
        "Same padding, no bias",
    );
}

/// The bits of a tensor's values.
fn bits<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<u32> {
    let v = t.into_data().to_vec::<f32>().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

/// Three updates through `kernels::adam_update` and through Burn's `Adam` (the same β₁, β₂,
/// ε): parameters and moments bit-identical after each. On `Flex` the fused kernel runs (a
/// parameter larger than one parallel task, a second one that is shared, so it must be copied
/// and its other owner left untouched); on `Autodiff<Flex>` Burn's ops do.
fn adam_matches_burn<B: Backend>() {
    use burn::optim::{AdamConfig, SimpleOptimizer};
    let adam = AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .build();
    for (shape, shared) in [([3usize, 7, 2001], false), ([5, 3, 4], true)] {
        let mut ours: Tensor<B, 3> = random(shape, 40);
        let mut burns = ours.clone();
        let mut moments = None;
        let mut state = None;
        for time in 1..=3 {
            let grad: Tensor<B, 3> = random(shape, 40 + time as u64);
            let lr = 2e-4 * time as f64;
            let kept = shared.then(|| ours.clone());
            let before = kept.as_ref().map(|k| bits(k.clone()));
            let step = kernels::AdamStep {
                lr,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                time,
            };
            let (p, m, v) = kernels::adam_update(step, ours, grad.clone(), moments);
            let (b, s) = SimpleOptimizer::<B>::step(&adam, lr, burns, grad, state);
            let s = s.expect("Adam keeps a state");
            assert_eq!(s.momentum.time, time);
            assert_eq!(
                bits(p.clone()),
                bits(b.clone()),
                "{shape:?} param, step {time}"
            );
            assert_eq!(
                bits(m.clone()),
                bits(s.momentum.moment_1.clone()),
                "m, step {time}"
            );
            assert_eq!(
                bits(v.clone()),
                bits(s.momentum.moment_2.clone()),
                "v, step {time}"
            );
            if let (Some(k), Some(before)) = (kept, before) {
                assert_eq!(bits(k), before, "a shared parameter was written in place");
            }
            (ours, burns, moments, state) = (p, b, Some((m, v)), Some(s));
        }
    }
}

#[test]
fn adam_update_matches_burns_adam_on_flex() {
    adam_matches_burn::<Flex>();
}

#[test]
fn adam_update_matches_burns_adam_through_burns_ops() {
    adam_matches_burn::<Ad>();
}

/// `kernels::ema_update` is `ema·decay + model·(1 − decay)` through Burn's ops, bit for bit,
/// and leaves another owner of `ema` untouched.
#[test]
fn ema_update_matches_burns_ops() {
    fn check<B: Backend>() {
        for shape in [[4usize, 5, 2003], [2, 3, 1]] {
            let ema: Tensor<B, 3> = random(shape, 60);
            let model: Tensor<B, 3> = random(shape, 61);
            let before = bits(ema.clone());
            let want = ema.clone().mul_scalar(0.9999) + model.clone().mul_scalar(1.0 - 0.9999);
            let got = kernels::ema_update(ema.clone(), model, 0.9999);
            assert_eq!(bits(got), bits(want), "{shape:?}");
            assert_eq!(bits(ema), before, "a shared EMA was written in place");
        }
    }
    check::<Flex>();
    check::<Ad>();
}
