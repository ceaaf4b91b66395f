//! [`Dataset`]: decoded training images held in memory as `u8`, N × C × H × W, plus the
//! [`LoadReport`] of how they were loaded.

use std::path::PathBuf;

use crate::DataError;

/// A file left out of a dataset because it could not be read or decoded
/// ([`LoadOptions::skip_bad`](crate::LoadOptions::skip_bad)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped (the error's message).
    pub reason: String,
}

/// What a load did: how many images were loaded, and which files were skipped or ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Images in the dataset.
    pub loaded: usize,
    /// Image files skipped as unreadable or corrupt (only with `skip_bad`), in path order.
    pub skipped: Vec<SkippedFile>,
    /// Files in an image folder without a PNG/JPEG extension, not looked at (e.g. a README).
    pub ignored_non_images: usize,
    /// Whether images were center-cropped and resized to the requested size.
    pub resized: bool,
}

/// Training images in memory, as `u8` values 0–255, laid out N × C × H × W (planar, row-major).
///
/// Every image has the same channels and size, those of the
/// [`LoadOptions`](crate::LoadOptions) it was loaded with. Batches scale them to [-1, 1]
/// ([`BatchIter`](crate::BatchIter)); keeping `u8` here costs a quarter of `f32`'s memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    data: Vec<u8>,
    len: usize,
    channels: usize,
    height: usize,
    width: usize,
    report: LoadReport,
}

impl Dataset {
    /// Wraps `len` images already laid out N × C × H × W.
    ///
    /// # Errors
    /// [`DataError::RawLength`] if `data.len() != len · channels · height · width`;
    /// [`DataError::UnsupportedChannels`] unless `channels` is 1 or 3;
    /// [`DataError::ZeroSize`] for a zero side.
    pub fn from_raw(
        data: Vec<u8>,
        len: usize,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Self, DataError> {
        if channels != 1 && channels != 3 {
            return Err(DataError::UnsupportedChannels { channels });
        }
        if height == 0 || width == 0 {
            return Err(DataError::ZeroSize { height, width });
        }
        let expected = len * channels * height * width;
        if data.len() != expected {
            return Err(DataError::RawLength {
                len,
                channels,
                height,
                width,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            data,
            len,
            channels,
            height,
            width,
            report: LoadReport {
                loaded: len,
                ..LoadReport::default()
            },
        })
    }

    /// Attaches the load report (the loaders' last step).
    pub(crate) fn with_report(mut self, report: LoadReport) -> Self {
        self.report = LoadReport {
            loaded: self.len,
            ..report
        };
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no images (never the case for a loaded dataset: an empty source is an
    /// error).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Channels per image: 1 or 3.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes per image, C · H · W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`, C × H × W bytes.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len,
            "image index {i} out of range for a dataset of {} images",
            self.len
        );
        let n = self.image_len();
        &self.data[i * n..(i + 1) * n]
    }

    /// All images, N × C × H × W.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// How the dataset was loaded: counts, skipped files.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_checks_length_and_indexes_images() {
        let data: Vec<u8> = (0..2 * 3 * 2 * 2).map(|v| v as u8).collect();
        let ds = Dataset::from_raw(data, 2, 3, 2, 2).unwrap();
        assert_eq!(
            (ds.len(), ds.channels(), ds.height(), ds.width()),
            (2, 3, 2, 2)
        );
        assert_eq!(ds.image(1)[0], 12);
        assert_eq!(ds.report().loaded, 2);
        assert!(matches!(
            Dataset::from_raw(vec![0; 5], 2, 1, 2, 2),
            Err(DataError::RawLength {
                expected: 8,
                actual: 5,
                ..
            })
        ));
    }

    #[test]
    #[should_panic(expected = "image index 2 out of range")]
    fn image_out_of_range_panics() {
        let ds = Dataset::from_raw(vec![0; 8], 2, 1, 2, 2).unwrap();
        let _ = ds.image(2);
    }
}
