//! Runnable examples live beside this file: `cargo run -p ddpm-examples --example NAME`.
