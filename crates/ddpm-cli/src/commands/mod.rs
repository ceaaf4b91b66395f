//! One module per subcommand.

pub mod bench;
pub mod convert;
pub mod eval;
pub mod fid;
pub mod latent;
pub mod sample;
pub mod schedule;
pub mod train;
pub mod unet;
