//! One module per subcommand.

pub mod convert;
pub mod schedule;
pub mod unet;
