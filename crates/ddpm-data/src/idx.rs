//! MNIST and Fashion-MNIST: IDX image files, raw or gzip-compressed.
//!
//! IDX (LeCun et al.): big-endian; images start with the magic `00 00 08 03` (unsigned bytes, 3
//! dimensions), then u32 count, rows, cols, then count · rows · cols pixels, row-major.
//! Labels are not read: DDPM here is unconditional.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::preprocess::convert_planar;
use crate::{DataError, Dataset, ImageSize, LoadOptions, LoadReport, Split};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (N × rows × cols).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const HEADER_LEN: usize = 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, gunzipping it when it starts with the gzip magic (whatever its name).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    // The gzip trailer holds the uncompressed size mod 2^32: a capacity hint only.
    let hint = bytes
        .len()
        .checked_sub(4)
        .map(|i| u32::from_le_bytes(bytes[i..].try_into().expect("4 bytes")) as usize)
        .unwrap_or(0)
        .min(1 << 30);
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::Decompress {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Parses IDX image bytes: returns the pixels (N × rows × cols) and (N, rows, cols).
pub(crate) fn parse_idx_images(
    path: &Path,
    mut bytes: Vec<u8>,
) -> Result<(Vec<u8>, usize, ImageSize), DataError> {
    let actual = bytes.len() as u64;
    let truncated = |expected: u64| DataError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual,
    };
    if bytes.len() < 4 {
        return Err(truncated(HEADER_LEN as u64));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let magic = word(0);
    if magic != IDX_IMAGES_MAGIC {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: IDX_IMAGES_MAGIC,
            found: magic,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN as u64));
    }
    let (n, rows, cols) = (word(1) as u64, word(2) as u64, word(3) as u64);
    let expected = HEADER_LEN as u64 + n * rows * cols;
    if actual < expected {
        return Err(truncated(expected));
    }
    if actual > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if n == 0 || rows == 0 || cols == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    bytes.drain(..HEADER_LEN);
    Ok((
        bytes,
        n as usize,
        ImageSize::new(rows as usize, cols as usize),
    ))
}

/// Loads one IDX image file (raw or `.gz`), converted to `opts.channels × opts.size`
/// (gray repeated for 3 channels; center crop + resize when the size differs).
///
/// # Errors
/// [`DataError::Io`], [`DataError::Decompress`], [`DataError::BadMagic`],
/// [`DataError::Truncated`], [`DataError::TrailingBytes`] or [`DataError::EmptyFile`], each
/// naming `path`; [`DataError::UnsupportedChannels`] / [`DataError::ZeroSize`] for bad options.
pub fn load_idx_images(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Dataset, DataError> {
    opts.validate()?;
    let path = path.as_ref();
    let (pixels, n, src_size) = parse_idx_images(path, read_maybe_gz(path)?)?;
    let (data, resized) = convert_planar(pixels, n, 1, src_size, opts.channels, opts.size);
    let ds = Dataset::from_raw(data, n, opts.channels, opts.size.height, opts.size.width)?;
    Ok(ds.with_report(LoadReport {
        resized,
        ..LoadReport::default()
    }))
}

/// The image file names of a split, as MNIST and Fashion-MNIST distribute them (the second
/// pair is how some unpackers rename them).
fn candidates(split: Split) -> Vec<String> {
    let stem = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    vec![
        format!("{stem}-images-idx3-ubyte.gz"),
        format!("{stem}-images-idx3-ubyte"),
        format!("{stem}-images.idx3-ubyte.gz"),
        format!("{stem}-images.idx3-ubyte"),
    ]
}

/// Finds the IDX image file of `split` in `dir` (or returns `dir` itself if it is a file).
pub(crate) fn find_idx_images(dir: &Path, split: Split, what: &str) -> Result<PathBuf, DataError> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    let names = candidates(split);
    names
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            what: format!("{what} {split} images"),
            candidates: names.clone(),
        })
}

/// Loads the images of `opts.split` from an MNIST or Fashion-MNIST directory:
/// `train-images-idx3-ubyte(.gz)` or `t10k-images-idx3-ubyte(.gz)`. `dir` may also name the
/// IDX file itself.
///
/// # Errors
/// [`DataError::MissingFile`] if no candidate file exists, else those of [`load_idx_images`].
pub fn load_mnist_dir(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Dataset, DataError> {
    opts.validate()?;
    load_idx_images(
        find_idx_images(dir.as_ref(), opts.split, "MNIST-format")?,
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, rows, cols] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(pixels);
        v
    }

    #[test]
    fn parses_a_good_header() {
        let (px, n, size) =
            parse_idx_images(Path::new("x"), idx(2, 1, 3, &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!((n, size), (2, ImageSize::new(1, 3)));
        assert_eq!(px, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_label_file_magic() {
        let mut bytes = idx(1, 1, 1, &[0]);
        bytes[3] = 0x01; // labels: 00 00 08 01
        let err = parse_idx_images(Path::new("labels.idx"), bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    expected: 0x803,
                    found: 0x801,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("labels.idx") && msg.contains("0x00000801") && msg.contains("0x00000803"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_truncated_and_oversized() {
        let err = parse_idx_images(Path::new("t"), idx(2, 2, 2, &[0; 7])).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 24,
                    actual: 23,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_idx_images(Path::new("t"), IDX_IMAGES_MAGIC.to_be_bytes()[..3].to_vec())
            .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_idx_images(Path::new("t"), idx(1, 2, 2, &[0; 5])).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::TrailingBytes {
                    expected: 20,
                    actual: 21,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_idx_images(Path::new("t"), idx(0, 28, 28, &[])).unwrap_err();
        assert!(matches!(err, DataError::EmptyFile { .. }), "{err}");
    }

    #[test]
    fn candidate_names_follow_the_split() {
        assert_eq!(candidates(Split::Train)[0], "train-images-idx3-ubyte.gz");
        assert_eq!(candidates(Split::Test)[1], "t10k-images-idx3-ubyte");
    }
}
