//! [`ImageRef`]: one image named on a command line — an image file, or image `i` of a data set
//! (`mnist:data/mnist#7`) — for the commands that start from real images (interpolation,
//! shared latents).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::folder::decode;
use crate::{DataError, DataSpec, LoadOptions};

/// One image: a PNG/JPEG file, or the image at an index of a data set.
///
/// | written | image |
/// | --- | --- |
/// | `digit.png` | the file, converted to the model's channels and size |
/// | `mnist:data/mnist#7` | image 7 (0-based) of the split [`LoadOptions::split`] selects |
/// | `path/to/folder#3` | the 4th image of the folder in sorted path order |
///
/// # Example
/// ```
/// use ddpm_data::{DataSpec, ImageRef};
///
/// let r: ImageRef = "mnist:data/mnist#7".parse()?;
/// assert_eq!(r, ImageRef::Indexed { spec: DataSpec::Mnist("data/mnist".into()), index: 7 });
/// assert_eq!("a/b.png".parse::<ImageRef>()?, ImageRef::File("a/b.png".into()));
/// # Ok::<(), ddpm_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A PNG or JPEG file.
    File(PathBuf),
    /// Image `index` (0-based) of a data set.
    Indexed {
        /// The data set.
        spec: DataSpec,
        /// The image's position in it.
        index: usize,
    },
}

impl ImageRef {
    /// Reads the image, converted to `opts.channels × opts.size` (a data set is read whole,
    /// then indexed), as planar `u8` values `[C, H, W]`.
    ///
    /// # Errors
    /// [`DataError::Io`] / [`DataError::Decode`] naming the file; the data set's own errors;
    /// [`DataError::IndexOutOfRange`] for an index past its end.
    pub fn load(&self, opts: &LoadOptions) -> Result<Vec<u8>, DataError> {
        opts.validate()?;
        match self {
            Self::File(path) => Ok(decode(path, opts)?.0),
            Self::Indexed { spec, index } => {
                let dataset = spec.open(opts)?;
                if *index >= dataset.len() {
                    return Err(DataError::IndexOutOfRange {
                        spec: spec.to_string(),
                        index: *index,
                        len: dataset.len(),
                    });
                }
                Ok(dataset.image(*index).to_vec())
            }
        }
    }
}

impl ImageRef {
    /// [`ImageRef::load`], scaled to the model's range: x₀ = 2 · (v / 255) − 1, planar
    /// `[C, H, W]` ([`crate::scale_to_model_range`]).
    ///
    /// # Errors
    /// As [`ImageRef::load`].
    pub fn load_scaled(&self, opts: &LoadOptions) -> Result<Vec<f32>, DataError> {
        Ok(self
            .load(opts)?
            .into_iter()
            .map(crate::scale_to_model_range)
            .collect())
    }
}

impl FromStr for ImageRef {
    type Err = DataError;

    /// `SPEC#INDEX` when the text after the last `#` is a number, otherwise a file path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((spec, index)) = s.rsplit_once('#')
            && let Ok(index) = index.parse::<usize>()
        {
            return Ok(Self::Indexed {
                spec: spec.parse()?,
                index,
            });
        }
        if s.is_empty() {
            return Err(DataError::EmptySpec { spec: s.into() });
        }
        Ok(Self::File(s.into()))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Indexed { spec, index } => write!(f, "{spec}#{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSize;

    #[test]
    fn parses_files_and_indexed_specs() {
        assert_eq!(
            "mnist:d#0".parse::<ImageRef>().unwrap(),
            ImageRef::Indexed {
                spec: DataSpec::Mnist("d".into()),
                index: 0
            }
        );
        // A '#' not followed by a number belongs to the file name.
        assert_eq!(
            "x#y.png".parse::<ImageRef>().unwrap(),
            ImageRef::File("x#y.png".into())
        );
        assert!("minst:d#3".parse::<ImageRef>().is_err());
        assert!("".parse::<ImageRef>().is_err());
        let r: ImageRef = "cifar10:c#12".parse().unwrap();
        assert_eq!(r.to_string(), "cifar10:c#12");
    }

    #[test]
    fn reads_a_file_and_refuses_an_index_past_the_end() {
        let dir = std::env::temp_dir().join(format!("ddpm-image-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.png");
        let img = image::GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 4 + y) as u8 * 10]));
        img.save(&path).unwrap();
        let opts = LoadOptions::new(1, ImageSize::square(4));
        let values = ImageRef::File(path.clone()).load(&opts).unwrap();
        assert_eq!(values.len(), 16);
        assert_eq!(values[1], 40); // planar [C, H, W]: row 0, column 1 = (x=1, y=0)
        let indexed = ImageRef::Indexed {
            spec: DataSpec::ImageFolder(dir.clone()),
            index: 1,
        };
        let err = indexed.load(&opts).unwrap_err();
        assert!(matches!(
            err,
            DataError::IndexOutOfRange {
                index: 1,
                len: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("#1"), "{err}");
        let missing = ImageRef::File(dir.join("missing.png"))
            .load(&opts)
            .unwrap_err();
        assert!(missing.to_string().contains("missing.png"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
