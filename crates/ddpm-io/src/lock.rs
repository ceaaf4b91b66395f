//! Exclusive directory locks that die with the process.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::LockError;

/// An exclusive lock on a directory, held until dropped (or until the process exits, however
/// it exits: the OS releases it, so a killed run leaves no stale lock).
///
/// The lock is an OS file lock ([`File::try_lock`]) on `<dir>/.lock`; the file itself stays
/// (its presence means nothing).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The name of the lock file inside a locked directory.
    pub const FILE_NAME: &'static str = ".lock";

    /// Locks `dir` (which must exist) without waiting.
    ///
    /// # Errors
    ///
    /// [`LockError::Held`] if another process (or another `DirLock` in this one) holds it,
    /// naming the directory and the lock file; [`LockError::Io`] if the lock file cannot be
    /// created or locked.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<Self, LockError> {
        let dir = dir.as_ref();
        let path = dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LockError::Io {
                lock_file: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                dir: dir.to_path_buf(),
                lock_file: path,
            }),
            Err(TryLockError::Error(source)) => Err(LockError::Io {
                lock_file: path,
                source,
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = std::env::temp_dir().join(format!("ddpm-io-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }));
        assert!(err.to_string().contains(".lock"), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        let again = DirLock::acquire(&dir).unwrap();
        assert_eq!(again.path(), dir.join(".lock"));
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = std::env::temp_dir().join("ddpm-io-lock-does-not-exist/x/y");
        assert!(matches!(DirLock::acquire(&dir), Err(LockError::Io { .. })));
    }
}
