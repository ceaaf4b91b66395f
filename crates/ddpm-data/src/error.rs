//! [`DataError`]: every way loading training images can fail, naming the file at fault.

use std::path::PathBuf;

/// An error while parsing a data spec, reading a dataset or configuring a batch iterator.
///
/// Every variant about a file carries its path, so the message says which file is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory could not be opened, read or listed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip file is corrupt or truncated.
    #[error("cannot decompress {path} (corrupt or truncated gzip): {source}")]
    Decompress {
        /// The `.gz` file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// An IDX file does not start with the expected magic number.
    #[error(
        "{path} is not an IDX image file: magic number {found:#010x}, expected {expected:#010x} \
         (unsigned bytes, 3 dimensions)"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number this loader reads (`0x00000803` for images).
        expected: u32,
        /// The first four bytes of the file, big-endian.
        found: u32,
    },
    /// A file is shorter than its header (IDX) or the format (CIFAR-10) says.
    #[error("{path} is truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        /// The file (for `.gz`, its decompressed contents are meant).
        path: PathBuf,
        /// Bytes the format requires.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// A file is longer than its header (IDX) or the format (CIFAR-10) says.
    #[error("{path} has trailing data: expected {expected} bytes, found {actual}")]
    TrailingBytes {
        /// The file (for `.gz`, its decompressed contents are meant).
        path: PathBuf,
        /// Bytes the format requires.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// An image file could not be decoded (corrupt, truncated or not PNG/JPEG).
    #[error("cannot decode image {path}: {source}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image index ([`crate::ImageRef`]) past the end of its data set.
    #[error("{spec}#{index}: the data set has {len} images (indices 0 to {})", len.saturating_sub(1))]
    IndexOutOfRange {
        /// The data set.
        spec: String,
        /// The index asked for.
        index: usize,
        /// How many images it holds.
        len: usize,
    },
    /// A folder (searched recursively) holds no PNG or JPEG file.
    #[error("no PNG or JPEG images found in {path} (searched recursively)")]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// Every image of a folder was bad and skipped.
    #[error("none of the {skipped} images in {path} could be loaded; first failure: {first}")]
    NoUsableImages {
        /// The folder.
        path: PathBuf,
        /// How many images were skipped.
        skipped: usize,
        /// The first skipped file and why.
        first: String,
    },
    /// A file holds zero images.
    #[error("{path} holds no images")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// None of the file names a source expects exists.
    #[error("no {what} found in {dir}; looked for {}", .candidates.join(", "))]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for, e.g. "MNIST train images".
        what: String,
        /// The paths tried, relative to `dir`.
        candidates: Vec<String>,
    },
    /// A `--data` spec has a prefix this crate does not know.
    #[error(
        "unknown data source prefix {prefix:?} in {spec:?}; expected a folder, mnist:<dir>, \
         fashion-mnist:<dir>, cifar10:<dir> or folder:<dir>"
    )]
    UnknownSpecPrefix {
        /// The whole spec.
        spec: String,
        /// The part before the first ':'.
        prefix: String,
    },
    /// A `--data` spec has an empty path.
    #[error("data spec {spec:?} has an empty path")]
    EmptySpec {
        /// The whole spec.
        spec: String,
    },
    /// A split name other than `train` or `test`.
    #[error("unknown split {0:?}; expected \"train\" or \"test\"")]
    UnknownSplit(String),
    /// Images can only be loaded as 1 (grayscale) or 3 (RGB) channels.
    #[error("cannot load images with {channels} channels; expected 1 (grayscale) or 3 (RGB)")]
    UnsupportedChannels {
        /// The requested channel count.
        channels: usize,
    },
    /// A requested image size with a zero side.
    #[error("image size {height}x{width} has a zero side")]
    ZeroSize {
        /// Requested height.
        height: usize,
        /// Requested width.
        width: usize,
    },
    /// A buffer handed to [`Dataset::from_raw`](crate::Dataset::from_raw) does not match its shape.
    #[error(
        "raw image data has {actual} bytes; {len} images of {channels}x{height}x{width} need {expected}"
    )]
    RawLength {
        /// Number of images.
        len: usize,
        /// Channels per image.
        channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// `len · channels · height · width`.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// A batch size of zero.
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
    /// With `drop_last`, a batch larger than the dataset would yield no batch at all.
    #[error("batch size {batch_size} exceeds the dataset's {len} images while drop_last is set")]
    BatchLargerThanDataset {
        /// The batch size.
        batch_size: usize,
        /// Images in the dataset.
        len: usize,
    },
    /// A saved iterator state that does not fit this dataset and batch size.
    #[error("iterator state {state:?} is invalid: {reason}")]
    BadState {
        /// The state given.
        state: crate::BatchIterState,
        /// Why it does not fit.
        reason: &'static str,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
