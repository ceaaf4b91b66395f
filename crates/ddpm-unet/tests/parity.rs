//! Parity with diffusers' `UNet2DModel` on the `unet_tiny` fixtures: output within atol 1e-4
//! and every recorded intermediate activation, so a mismatch names the block at fault.

mod common;

use common::*;
use ddpm_unet::{Unet, UnetConfig, UnetIntermediates};

const ATOL: f32 = 1e-4;

fn assert_parity(unet: &Unet<TestBackend>, device: &Device) {
    let io = unet_io(device);
    let acts: UnetIntermediates<TestBackend> = unet.forward_with_intermediates(io.x, io.t);
    let want = |name: &str| &io.tensors[&format!("case0/act/{name}")];
    let mut checks: Vec<(String, burn::tensor::TensorData)> = vec![
        ("time_proj".into(), acts.time_proj.into_data()),
        ("time_embedding".into(), acts.time_embedding.into_data()),
        ("conv_in".into(), acts.conv_in.into_data()),
    ];
    for (i, a) in acts.down_blocks.into_iter().enumerate() {
        checks.push((format!("down_blocks.{i}"), a.into_data()));
    }
    checks.push(("mid_block".into(), acts.mid_block.into_data()));
    for (i, a) in acts.up_blocks.into_iter().enumerate() {
        checks.push((format!("up_blocks.{i}"), a.into_data()));
    }
    checks.push(("conv_norm_out".into(), acts.conv_norm_out.into_data()));
    checks.push(("conv_out".into(), acts.conv_out.into_data()));
    // Block by block, in forward order: the first failure names the block at fault.
    for (name, got) in checks {
        let diff = max_abs_diff(&name, got, want(&name));
        eprintln!("{name:>16}: max |burn - diffusers| = {diff:.2e}");
        assert!(
            diff <= ATOL,
            "{name}: max |burn − diffusers| = {diff:e} > {ATOL:e}"
        );
    }
}

#[test]
fn tiny_matches_diffusers_block_by_block() {
    let device = Default::default();
    let unet = Unet::<TestBackend>::from_diffusers(fixture("unet_tiny"), &device).unwrap();
    assert_eq!(unet.config(), &UnetConfig::tiny());
    assert_parity(&unet, &device);
}

#[test]
fn forward_equals_recorded_output() {
    let device = Default::default();
    let unet = Unet::<TestBackend>::from_diffusers(fixture("unet_tiny"), &device).unwrap();
    let io = unet_io(&device);
    let out = unet.forward(io.x, io.t).into_data();
    let diff = max_abs_diff("output", out, &io.tensors["case0/output"]);
    assert!(diff <= ATOL, "output: {diff:e}");
}

#[test]
fn legacy_attention_keys_load_to_the_same_model() {
    let device = Default::default();
    let unet = UnetConfig::tiny()
        .init::<TestBackend>(&device)
        .unwrap()
        .load_diffusers_weights(fixture("unet_tiny_legacy_attn_keys.safetensors"))
        .unwrap();
    assert_parity(&unet, &device);
}

#[test]
fn fixture_param_count_equals_diffusers() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("unet_tiny_io.json")).unwrap())
            .unwrap();
    let want = json["num_parameters"].as_u64().unwrap() as usize;
    let device = Default::default();
    let unet = Unet::<TestBackend>::from_diffusers(fixture("unet_tiny"), &device).unwrap();
    use burn::module::Module;
    assert_eq!(unet.num_params(), want);
    assert_eq!(unet.config().num_params(), want);
}

/// The same weights as a PyTorch `torch.save` zip (`diffusion_pytorch_model.bin`), read by
/// burn-store's PyTorch reader without executing the pickle (fixtures/make_pytorch_bin.py).
#[test]
fn pytorch_bin_loads_to_the_same_model() {
    let device = Default::default();
    let unet = UnetConfig::tiny()
        .init::<TestBackend>(&device)
        .unwrap()
        .load_diffusers_weights(fixture("unet_tiny_pytorch.bin"))
        .unwrap();
    assert_parity(&unet, &device);
}
