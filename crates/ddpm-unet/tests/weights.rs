//! Checkpoint I/O: diffusers export → import round trip (keys, shapes and values equal to the
//! diffusers original), native burnpack round trip, and errors that name the offending key.

mod common;

use std::path::PathBuf;

use burn::tensor::Tensor;
use common::*;
use ddpm_unet::{DIFFUSERS_SAFETENSORS, ImportError, ModelFormat, Unet, UnetConfig, read_config};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-unet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn output(unet: &Unet<TestBackend>, device: &Device) -> Tensor<TestBackend, 4> {
    let io = unet_io(device);
    unet.forward(io.x, io.t)
}

fn tiny(device: &Device) -> Unet<TestBackend> {
    Unet::from_diffusers(fixture("unet_tiny"), device).unwrap()
}

#[test]
fn diffusers_export_reproduces_the_original_file() {
    let device = Default::default();
    let dir = temp_dir("export");
    tiny(&device).to_diffusers(&dir).unwrap();

    // Same keys, shapes (PyTorch layouts) and values as the file diffusers wrote.
    let original = read_tensors("unet_tiny/diffusion_pytorch_model.safetensors");
    let mut store = burn_store::SafetensorsStore::from_file(dir.join(DIFFUSERS_SAFETENSORS));
    use burn_store::ModuleStore;
    let exported = store.get_all_snapshots().unwrap();
    let keys = |m: Vec<&String>| m.into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(exported.keys().collect()),
        keys(original.keys().collect())
    );
    for (key, want) in &original {
        let got = exported[key].to_data().unwrap();
        assert_eq!(got.shape, want.shape, "{key}");
        assert_eq!(got.as_bytes(), want.as_bytes(), "{key}");
    }

    // config.json reads back as the same config, with diffusers' class name.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["_class_name"], "UNet2DModel");
    assert_eq!(json["down_block_types"][1], "AttnDownBlock2D");
    assert_eq!(read_config(&dir).unwrap(), UnetConfig::tiny());
    assert_eq!(ModelFormat::detect(&dir).unwrap(), ModelFormat::Diffusers);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diffusers_round_trip_gives_the_same_outputs() {
    let device = Default::default();
    let dir = temp_dir("roundtrip");
    // Random weights (no symmetric shortcut): export → import must reproduce them.
    let unet = UnetConfig::tiny()
        .with_attention_head_dim(Some(16))
        .init::<TestBackend>(&device)
        .unwrap();
    unet.to_diffusers(&dir).unwrap();
    let back = Unet::<TestBackend>::from_diffusers(&dir, &device).unwrap();
    assert_eq!(back.config(), unet.config());
    let (a, b) = (output(&unet, &device), output(&back, &device));
    assert_eq!(a.into_data(), b.into_data());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn native_round_trip_gives_the_same_outputs() {
    let device = Default::default();
    let dir = temp_dir("native");
    let unet = tiny(&device);
    unet.save(&dir).unwrap();
    assert_eq!(ModelFormat::detect(&dir).unwrap(), ModelFormat::Native);
    let back = Unet::<TestBackend>::load(&dir, &device).unwrap();
    assert_eq!(back.config(), unet.config());
    let any = Unet::<TestBackend>::load_any(&dir, &device).unwrap();
    let want = output(&unet, &device).into_data();
    assert_eq!(output(&back, &device).into_data(), want);
    assert_eq!(output(&any, &device).into_data(), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_into(config: UnetConfig) -> ImportError {
    let device = Default::default();
    config
        .init::<TestBackend>(&device)
        .unwrap()
        .load_diffusers_weights(fixture("unet_tiny/diffusion_pytorch_model.safetensors"))
        .unwrap_err()
}

#[test]
fn missing_key_is_named() {
    use ddpm_unet::BlockType::Attention;
    let err = load_into(UnetConfig::tiny().with_down_block_types(vec![Attention, Attention]));
    let msg = err.to_string();
    assert!(
        matches!(err, ImportError::MissingKey { more: 9, .. }),
        "{msg}"
    );
    assert!(msg.contains("down_blocks.0.attentions.0."), "{msg}");
}

#[test]
fn unexpected_key_is_named() {
    let err = load_into(UnetConfig::tiny().with_mid_block_attention(false));
    let msg = err.to_string();
    assert!(matches!(err, ImportError::UnexpectedKey { .. }), "{msg}");
    assert!(msg.contains("mid_block.attentions.0."), "{msg}");
}

#[test]
fn shape_mismatch_names_key_and_both_shapes() {
    let err = load_into(UnetConfig::tiny().with_in_channels(1));
    let msg = err.to_string();
    assert!(
        msg.contains("conv_in.weight")
            && msg.contains("[32, 3, 3, 3]")
            && msg.contains("[32, 1, 3, 3]"),
        "{msg}"
    );
    // Linear weights are reported in the file's PyTorch [out, in] layout.
    let err = load_into(UnetConfig::tiny().with_time_embedding_dim(Some(64)));
    let msg = err.to_string();
    assert!(
        msg.contains("time_embedding.linear_1.weight")
            && msg.contains("[128, 32]")
            && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn unsupported_or_invalid_config_is_an_error() {
    let dir = temp_dir("badconfig");
    std::fs::create_dir_all(&dir).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("unet_tiny/config.json")).unwrap())
            .unwrap();
    json["norm_num_groups"] = 7.into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Unet::<TestBackend>::from_diffusers(&dir, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("norm_num_groups"), "{err}");

    json["norm_num_groups"] = 8.into();
    json["up_block_types"][0] = "CrossAttnUpBlock2D".into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Unet::<TestBackend>::from_diffusers(&dir, &Default::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Unsupported {
                field: "up_block_types",
                ..
            }
        ),
        "{err}"
    );

    json["up_block_types"][0] = "AttnUpBlock2D".into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Unet::<TestBackend>::from_diffusers(&dir, &Default::default()).unwrap_err();
    assert!(matches!(err, ImportError::NoWeights { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
