//! Runnable examples live beside this file: `cargo run -p ddpm-examples --example NAME`.
//!
//! The examples run on the one Burn backend the crate's cargo features select (the same features
//! as the `ddpm` binary, which instead picks among them at run time with `--device`). With several
//! enabled the most specific GPU wins: `cuda`, then `metal`, then `vulkan`, then `wgpu`, then
//! `flex` (the default, pure-Rust CPU). The device is that backend's default one, as `--device
//! cuda|metal|vulkan|wgpu|flex` without an index.
//!
//! ```sh
//! cargo run --release -p ddpm-examples --no-default-features --features wgpu --example train_mnist
//! ```

/// The backend the examples run on (see the crate docs for how features select it).
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// The backend the examples run on (see the crate docs for how features select it).
#[cfg(all(feature = "metal", not(feature = "cuda")))]
pub type Backend = burn::backend::Metal;
/// The backend the examples run on (see the crate docs for how features select it).
#[cfg(all(feature = "vulkan", not(any(feature = "cuda", feature = "metal"))))]
pub type Backend = burn::backend::Vulkan;
/// The backend the examples run on (see the crate docs for how features select it).
#[cfg(all(
    feature = "wgpu",
    not(any(feature = "cuda", feature = "metal", feature = "vulkan"))
))]
pub type Backend = burn::backend::Wgpu;
/// The backend the examples run on (see the crate docs for how features select it).
#[cfg(all(
    feature = "flex",
    not(any(
        feature = "cuda",
        feature = "metal",
        feature = "vulkan",
        feature = "wgpu"
    ))
))]
pub type Backend = burn::backend::Flex;

#[cfg(not(any(
    feature = "flex",
    feature = "wgpu",
    feature = "vulkan",
    feature = "metal",
    feature = "cuda"
)))]
compile_error!(
    "ddpm-examples needs a backend feature: flex (default), wgpu, vulkan, metal or cuda"
);
