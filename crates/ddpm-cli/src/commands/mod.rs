//! One module per subcommand.

pub mod schedule;
pub mod unet;
pub mod convert;
