//! Atomic file replacement: temporary file in the same directory, flush, `fsync`, rename.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::WriteError;

/// Every temporary file this crate creates has this in its name (`.<name>.tmp-<pid>-<n>`), so
/// a cleanup pass can recognise leftovers of a killed process ([`is_temp_name`]).
pub const TEMP_MARKER: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `name` is a temporary file name made by [`write_atomic`] (a leftover if the process
/// that made it is gone).
pub fn is_temp_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Writes `contents` to `path` atomically: a reader (or a crash) sees the old file or the
/// complete new one, never a partial one. Creates the file if needed; never creates parent
/// directories.
///
/// # Errors
///
/// [`WriteError`] naming `path` and the stage that failed (e.g. `No space left on device`
/// while writing or syncing); the temporary file is removed and the old file is intact.
pub fn write_atomic(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<(), WriteError> {
    let contents = contents.as_ref();
    write_atomic_with(path, |w| w.write_all(contents))
}

/// Like [`write_atomic`], with the contents streamed by `write` into a buffered writer (for
/// encoders that take a `Write`). The buffer is flushed and the file synced before the rename,
/// so an error at any point — including the final flush — is returned.
///
/// # Errors
///
/// As [`write_atomic`]; an error returned by `write` is reported with stage "writing".
pub fn write_atomic_with<F>(path: impl AsRef<Path>, write: F) -> Result<(), WriteError>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let path = path.as_ref();
    let Some(name) = path.file_name() else {
        return Err(WriteError::NotAFile { path: path.into() });
    };
    let err = |stage: &'static str| {
        move |source: std::io::Error| WriteError::Io {
            path: path.to_path_buf(),
            stage,
            source,
        }
    };
    // A device or pipe (`/dev/stdout`, `/dev/full`, a FIFO) is written in place: renaming a
    // regular file over it would replace the device node. Errors still surface.
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(WriteError::NotAFile { path: path.into() });
        }
        if !meta.is_file() {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(err("opening"))?;
            let mut w = BufWriter::new(file);
            write(&mut w).map_err(err("writing"))?;
            return w.flush().map_err(err("writing"));
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}{}{}-{}",
        name.to_string_lossy(),
        TEMP_MARKER,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err("creating the temporary file"))?;
    let result = (|| {
        let mut w = BufWriter::new(file);
        write(&mut w).map_err(err("writing"))?;
        w.flush().map_err(err("writing"))?;
        let file = w.into_inner().map_err(|e| err("writing")(e.into_error()))?;
        file.sync_all().map_err(err("syncing"))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(err("renaming into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Best effort: not every platform or file system lets a
    // directory be opened and synced, and the data is already safe under the final name.
    #[cfg(unix)]
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| is_temp_name(n))
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn writes_and_replaces() {
        let dir = scratch("replace");
        let p = dir.join("a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        assert!(leftovers(&dir).is_empty());
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file() {
        let dir = scratch("fail");
        let p = dir.join("a.bin");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.bin"), "{e}");
        assert!(e.to_string().contains("encoder failed"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(leftovers(&dir).is_empty());
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_target() {
        let dir = scratch("nodir");
        let p = dir.join("no/such/dir/a.bin");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/a.bin"), "{e}");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert!(matches!(
            write_atomic("/", b"x"),
            Err(WriteError::NotAFile { .. })
        ));
    }

    /// `/dev/full` accepts `open` and fails every write with ENOSPC: the error must surface
    /// (`image`'s own save drops it), and the device node must not be replaced by a rename.
    #[cfg(target_os = "linux")]
    #[test]
    fn full_device_error_surfaces_and_the_device_stays() {
        let e = write_atomic("/dev/full", vec![0u8; 1 << 16]).unwrap_err();
        assert!(e.to_string().contains("/dev/full"), "{e}");
        assert!(e.to_string().contains("No space left"), "{e}");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::metadata("/dev/full")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let dir = scratch("isdir");
        assert!(matches!(
            write_atomic(&dir, b"x"),
            Err(WriteError::NotAFile { .. })
        ));
    }
}
