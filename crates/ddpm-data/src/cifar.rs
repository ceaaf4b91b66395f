//! CIFAR-10's binary batches (`cifar-10-binary.tar.gz`, Krizhevsky 2009).
//!
//! Each record is 1 label byte then 3072 pixel bytes: the red, green and blue 32 × 32 planes,
//! row-major, which is already C × H × W. A standard batch file holds 10,000 records
//! (30,730,000 bytes). Labels are not kept: DDPM here is unconditional.

use std::path::{Path, PathBuf};

use crate::idx::read_maybe_gz;
use crate::preprocess::{convert_planar, parallel_map};
use crate::{DataError, Dataset, ImageSize, LoadOptions, LoadReport, Split};

/// CIFAR-10 image side.
pub const CIFAR10_SIDE: usize = 32;
/// Bytes per record: one label byte and a 3 × 32 × 32 image.
pub const CIFAR10_RECORD_LEN: usize = 1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE;
/// Records in each of the standard batch files.
pub const CIFAR10_RECORDS_PER_BATCH: usize = 10_000;

/// Splits one batch file's bytes into planar images (labels dropped).
///
/// With `records`, the file must hold exactly that many; otherwise any positive whole number.
pub(crate) fn parse_cifar_batch(
    path: &Path,
    bytes: &[u8],
    records: Option<usize>,
) -> Result<Vec<u8>, DataError> {
    let actual = bytes.len() as u64;
    let expected = match records {
        Some(r) => (r * CIFAR10_RECORD_LEN) as u64,
        // The next whole record: a file cut mid-record is truncated.
        None => bytes.len().div_ceil(CIFAR10_RECORD_LEN).max(1) as u64 * CIFAR10_RECORD_LEN as u64,
    };
    if actual == 0 && records.is_none() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if actual < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / CIFAR10_RECORD_LEN * (CIFAR10_RECORD_LEN - 1));
    for rec in bytes.chunks_exact(CIFAR10_RECORD_LEN) {
        out.extend_from_slice(&rec[1..]);
    }
    Ok(out)
}

fn finish(pixels: Vec<u8>, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let n = pixels.len() / (CIFAR10_RECORD_LEN - 1);
    let native = ImageSize::square(CIFAR10_SIDE);
    let (data, resized) = convert_planar(pixels, n, 3, native, opts.channels, opts.size);
    let ds = Dataset::from_raw(data, n, opts.channels, opts.size.height, opts.size.width)?;
    Ok(ds.with_report(LoadReport {
        resized,
        ..LoadReport::default()
    }))
}

/// Loads one CIFAR-10 binary batch file holding any whole number of records (raw or `.gz`).
///
/// # Errors
/// [`DataError::Io`], [`DataError::Decompress`], [`DataError::EmptyFile`] or
/// [`DataError::Truncated`] (a partial record), naming `path`.
pub fn load_cifar10_batch(
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    opts.validate()?;
    let path = path.as_ref();
    let pixels = parse_cifar_batch(path, &read_maybe_gz(path)?, None)?;
    finish(pixels, opts)
}

/// The batch files of a split, in order.
fn batch_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// Finds the batch files of `split` in `dir` or in `dir/cifar-10-batches-bin/`.
fn find_batches(dir: &Path, split: Split) -> Result<Vec<PathBuf>, DataError> {
    let names = batch_names(split);
    for base in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if base.join(&names[0]).is_file() {
            return names
                .iter()
                .map(|name| {
                    let p = base.join(name);
                    if p.is_file() {
                        Ok(p)
                    } else {
                        Err(DataError::MissingFile {
                            dir: base.clone(),
                            what: format!("CIFAR-10 {split} batch"),
                            candidates: vec![name.clone()],
                        })
                    }
                })
                .collect();
        }
    }
    Err(DataError::MissingFile {
        dir: dir.to_path_buf(),
        what: format!("CIFAR-10 {split} batches"),
        candidates: vec![
            names.join(" + "),
            format!(
                "cifar-10-batches-bin/{}",
                names.join(" + cifar-10-batches-bin/")
            ),
        ],
    })
}

/// Loads the CIFAR-10 images of `opts.split` from `dir` (or `dir/cifar-10-batches-bin/`):
/// `data_batch_1.bin` … `data_batch_5.bin` (50,000 images) or `test_batch.bin` (10,000),
/// each exactly 10,000 records; files are read in parallel.
///
/// # Errors
/// [`DataError::MissingFile`] for a missing batch; [`DataError::Truncated`] /
/// [`DataError::TrailingBytes`] if a batch is not exactly 30,730,000 bytes; I/O errors; all
/// naming the file.
pub fn load_cifar10_dir(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Dataset, DataError> {
    opts.validate()?;
    let files = find_batches(dir.as_ref(), opts.split)?;
    let parts = parallel_map(files.len(), true, |i| {
        let bytes = read_maybe_gz(&files[i])?;
        parse_cifar_batch(&files[i], &bytes, Some(CIFAR10_RECORDS_PER_BATCH))
    });
    let mut pixels =
        Vec::with_capacity(files.len() * CIFAR10_RECORDS_PER_BATCH * (CIFAR10_RECORD_LEN - 1));
    // Slots are only unfilled after an error, which this loop then reaches and returns: the
    // first failing file in order.
    for part in parts.into_iter().flatten() {
        pixels.extend_from_slice(&part?);
    }
    finish(pixels, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut r = vec![(i % 10) as u8];
                r.extend((0..CIFAR10_RECORD_LEN - 1).map(|p| (p + i) as u8));
                r
            })
            .collect()
    }

    #[test]
    fn drops_labels_keeps_planes() {
        let px = parse_cifar_batch(Path::new("b"), &records(2), None).unwrap();
        assert_eq!(px.len(), 2 * 3072);
        assert_eq!(&px[..3], &[0, 1, 2]);
        assert_eq!(&px[3072..3075], &[1, 2, 3]);
    }

    #[test]
    fn truncated_batch_names_file_and_sizes() {
        let bytes = records(3);
        let err = parse_cifar_batch(
            Path::new("data_batch_1.bin"),
            &bytes[..bytes.len() - 10],
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 9219,
                    actual: 9209,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("data_batch_1.bin"));
        let err = parse_cifar_batch(Path::new("b"), &records(2), Some(3)).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 9219,
                    actual: 6146,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_cifar_batch(Path::new("b"), &records(2), Some(1)).unwrap_err();
        assert!(matches!(err, DataError::TrailingBytes { .. }), "{err}");
        let err = parse_cifar_batch(Path::new("b"), &[], None).unwrap_err();
        assert!(matches!(err, DataError::EmptyFile { .. }), "{err}");
    }

    #[test]
    fn missing_dir_lists_both_layouts() {
        let err = find_batches(Path::new("/nonexistent-ddpm-data"), Split::Test).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("test_batch.bin") && msg.contains("cifar-10-batches-bin/"),
            "{msg}"
        );
    }
}
