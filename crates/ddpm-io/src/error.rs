//! Errors of this crate: each names the file at fault.

use std::path::PathBuf;

/// Writing a file atomically failed; the previous file under `path` (if any) is intact and no
/// partial file is left under its name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The target path is a directory or has no file name (e.g. `/` or `..`).
    #[error("cannot write {path}: the path names a directory, not a file")]
    NotAFile {
        /// The target path.
        path: PathBuf,
    },
    /// A path that must be a directory (an output directory, or the parent of an output
    /// file) exists and is something else, e.g. a regular file.
    #[error("cannot use {path} as a directory: it exists and is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// An I/O operation failed (creating, writing, syncing or renaming the temporary file).
    #[error("writing {path} failed while {stage}: {source}")]
    Io {
        /// The target path (not the temporary file).
        path: PathBuf,
        /// What was being done: "creating the temporary file", "writing", "syncing",
        /// "renaming into place".
        stage: &'static str,
        /// The OS error (e.g. "No space left on device").
        #[source]
        source: std::io::Error,
    },
}

/// Locking a directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process (or another handle in this one) holds the lock.
    #[error(
        "{dir} is in use by another process (lock file {lock_file} is held); \
         wait for it to finish or choose another directory"
    )]
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The lock file inside it.
        lock_file: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {lock_file}: {source}")]
    Io {
        /// The lock file.
        lock_file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
