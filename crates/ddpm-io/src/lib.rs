//! Crash-safe file output shared by every `ddpm` crate that writes files.
//!
//! - [`write_atomic`] / [`write_atomic_with`]: the bytes go to a temporary file in the target's
//!   directory, are flushed and `fsync`ed, and only then renamed over the target. A full disk,
//!   a killed process or a power cut leaves either the previous file or the complete new one
//!   under the final name — never a truncated file — and every write error is returned.
//! - [`check_output_file`] / [`check_output_dir`]: a cheap check, before long work, that an
//!   output path can be written (not a directory where a file goes, not a file where a
//!   directory goes), so a mistyped path fails in a second instead of after the work.
//! - [`DirLock`]: an exclusive OS lock on a directory (a `.lock` file inside it, locked with
//!   [`std::fs::File::try_lock`]). The OS releases it when the process dies, so a killed run
//!   never leaves a stale lock.
//!
//! # Example
//! ```
//! let dir = std::env::temp_dir().join(format!("ddpm-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("config.json");
//! ddpm_io::write_atomic(&path, b"{}\n")?;
//! assert_eq!(std::fs::read(&path)?, b"{}\n");
//!
//! let lock = ddpm_io::DirLock::acquire(&dir)?;
//! assert!(ddpm_io::DirLock::acquire(&dir).is_err()); // a second holder is refused
//! drop(lock);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod atomic;
mod error;
mod lock;
mod preflight;

pub use atomic::{TEMP_MARKER, is_temp_name, write_atomic, write_atomic_with};
pub use error::{LockError, WriteError};
pub use lock::DirLock;
pub use preflight::{check_output_dir, check_output_file};
