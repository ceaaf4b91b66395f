//! Checks of output paths before long work (sampling, training, evaluation): a path that can
//! never be written fails at once, naming the path, instead of after the work is done.
//!
//! The checks look only at what exists now; the write itself still reports every error.

use std::path::Path;

use crate::WriteError;

/// The nearest existing ancestor of `path` (excluding `path` itself) must be a directory.
fn check_parents(path: &Path) -> Result<(), WriteError> {
    let existing = path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| std::fs::symlink_metadata(p).is_ok());
    match existing {
        Some(p) if !p.is_dir() => Err(WriteError::NotADirectory { path: p.into() }),
        _ => Ok(()),
    }
}

/// Checks that `path` can name an output file: it is not a directory, and the nearest existing
/// ancestor is a directory (missing ones can be created).
///
/// # Errors
/// [`WriteError::NotAFile`] when `path` is a directory or has no file name,
/// [`WriteError::NotADirectory`] naming an ancestor that is a file.
pub fn check_output_file(path: impl AsRef<Path>) -> Result<(), WriteError> {
    let path = path.as_ref();
    if path.file_name().is_none() || path.is_dir() {
        return Err(WriteError::NotAFile { path: path.into() });
    }
    check_parents(path)
}

/// Checks that `path` can be an output directory: it is a directory, or absent with a
/// directory as its nearest existing ancestor (it will be created).
///
/// # Errors
/// [`WriteError::NotADirectory`] naming `path` (or an ancestor) when it exists as something
/// else than a directory.
pub fn check_output_dir(path: impl AsRef<Path>) -> Result<(), WriteError> {
    let path = path.as_ref();
    if std::fs::symlink_metadata(path).is_ok() {
        return if path.is_dir() {
            Ok(())
        } else {
            Err(WriteError::NotADirectory { path: path.into() })
        };
    }
    check_parents(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_in_the_wrong_place_are_named() {
        let dir = std::env::temp_dir().join(format!("ddpm-io-preflight-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.txt");
        std::fs::write(&file, b"x").unwrap();

        check_output_file(dir.join("new.png")).unwrap();
        check_output_file(dir.join("new/deeper/x.png")).unwrap();
        check_output_file(&file).unwrap();
        check_output_dir(&dir).unwrap();
        check_output_dir(dir.join("new/run")).unwrap();

        assert!(matches!(
            check_output_file(&dir),
            Err(WriteError::NotAFile { .. })
        ));
        for e in [
            check_output_dir(&file).unwrap_err(),
            check_output_dir(file.join("run")).unwrap_err(),
            check_output_file(file.join("x.png")).unwrap_err(),
        ] {
            assert!(
                matches!(&e, WriteError::NotADirectory { path } if path == &file),
                "{e}"
            );
            assert!(e.to_string().contains("a.txt"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
