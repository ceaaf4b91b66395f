//! [`LoadOptions`]: the shape every source is converted to (the model's channels and size),
//! which split to read, and whether bad image files are skipped.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// Height and width of the images handed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageSize {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageSize {
    /// A `height × width` size.
    pub fn new(height: usize, width: usize) -> Self {
        Self { height, width }
    }

    /// A square `side × side` size (the U-Net's `sample_size`).
    pub fn square(side: usize) -> Self {
        Self::new(side, side)
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// Which part of a dataset with a fixed split (MNIST, Fashion-MNIST, CIFAR-10) to read.
/// Image folders have no split and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training images (MNIST `train-*`, CIFAR-10 `data_batch_1..5.bin`).
    #[default]
    Train,
    /// The test images (MNIST `t10k-*`, CIFAR-10 `test_batch.bin`).
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Self::Train),
            "test" | "t10k" => Ok(Self::Test),
            other => Err(DataError::UnknownSplit(other.to_string())),
        }
    }
}

/// How to load a dataset: every image comes out with `channels` planes of `size`.
///
/// Sources whose images differ from `size` are center-cropped to its aspect ratio and then
/// resized (bilinear, with the filter widened when shrinking, i.e. antialiased). Grayscale
/// sources asked for 3 channels repeat the gray plane; colour sources asked for 1 channel are
/// converted with Rec. 709 luma (the `image` crate's conversion).
#[derive(Config, Debug, PartialEq)]
pub struct LoadOptions {
    /// Channels of the model's input: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// The model's image size.
    pub size: ImageSize,
    /// Which split of MNIST / Fashion-MNIST / CIFAR-10 to read. Default: train.
    #[config(default = "Split::Train")]
    pub split: Split,
    /// Skip image-folder files that cannot be read or decoded, listing them in the
    /// [`LoadReport`](crate::LoadReport), instead of failing on the first one. Default: false.
    /// Binary datasets (IDX, CIFAR-10) always fail on a bad file: skipping would drop a whole
    /// split.
    #[config(default = false)]
    pub skip_bad: bool,
}

impl LoadOptions {
    /// Checks the channel count and size.
    ///
    /// # Errors
    /// [`DataError::UnsupportedChannels`] unless `channels` is 1 or 3;
    /// [`DataError::ZeroSize`] if a side of `size` is 0.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.channels != 1 && self.channels != 3 {
            return Err(DataError::UnsupportedChannels {
                channels: self.channels,
            });
        }
        if self.size.height == 0 || self.size.width == 0 {
            return Err(DataError::ZeroSize {
                height: self.size.height,
                width: self.size.width,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let opts = LoadOptions::new(3, ImageSize::square(32));
        assert_eq!(opts.split, Split::Train);
        assert!(!opts.skip_bad);
        assert!(opts.validate().is_ok());
        assert!(matches!(
            LoadOptions::new(2, ImageSize::square(32)).validate(),
            Err(DataError::UnsupportedChannels { channels: 2 })
        ));
        assert!(matches!(
            LoadOptions::new(1, ImageSize::new(0, 4)).validate(),
            Err(DataError::ZeroSize { .. })
        ));
    }

    #[test]
    fn split_parses_and_round_trips() {
        assert_eq!("train".parse::<Split>().unwrap(), Split::Train);
        assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
        assert_eq!(Split::Test.to_string(), "test");
        assert!(matches!("val".parse::<Split>(), Err(DataError::UnknownSplit(s)) if s == "val"));
    }

    #[test]
    fn options_json_round_trip() {
        let opts = LoadOptions::new(1, ImageSize::new(28, 30))
            .with_split(Split::Test)
            .with_skip_bad(true);
        // burn's Config derive writes JSON through `Display`.
        let json = opts.to_string();
        assert!(json.contains("\"test\""), "{json}");
        assert_eq!(LoadOptions::load_binary(json.as_bytes()).unwrap(), opts);
    }
}
