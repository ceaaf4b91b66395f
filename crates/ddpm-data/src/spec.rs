//! [`DataSpec`]: the CLI's `--data <folder | mnist:<dir> | fashion-mnist:<dir> | cifar10:<dir>>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, LoadOptions, load_cifar10_dir, load_image_folder, load_mnist_dir};

/// Where training images come from, as written on the command line.
///
/// | spec | source |
/// | --- | --- |
/// | `path/to/folder` or `folder:path` | PNG/JPEG files under the folder, recursively |
/// | `mnist:<dir>` | `train-images-idx3-ubyte(.gz)` / `t10k-…` in `dir` (or the file itself) |
/// | `fashion-mnist:<dir>` | the same file names, Fashion-MNIST |
/// | `cifar10:<dir>` | `data_batch_1..5.bin` / `test_batch.bin` in `dir` or `dir/cifar-10-batches-bin/` |
///
/// A spec that starts with another `word:` is an error rather than a folder, so a typo like
/// `minst:data` is caught; write `folder:<path>` for a folder whose name contains ':'. A
/// one-letter prefix (`C:\images`) is a path.
///
/// # Example
/// ```
/// use ddpm_data::DataSpec;
///
/// let spec: DataSpec = "mnist:data/mnist".parse()?;
/// assert_eq!(spec, DataSpec::Mnist("data/mnist".into()));
/// assert_eq!(spec.to_string(), "mnist:data/mnist");
/// assert!("minst:data".parse::<DataSpec>().is_err());
/// # Ok::<(), ddpm_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSpec {
    /// A folder of PNG/JPEG images, searched recursively.
    ImageFolder(PathBuf),
    /// MNIST IDX files (`.gz` or raw).
    Mnist(PathBuf),
    /// Fashion-MNIST IDX files (`.gz` or raw).
    FashionMnist(PathBuf),
    /// CIFAR-10 binary batches.
    Cifar10(PathBuf),
}

impl DataSpec {
    /// The folder, directory or file the spec points at.
    pub fn path(&self) -> &Path {
        match self {
            Self::ImageFolder(p) | Self::Mnist(p) | Self::FashionMnist(p) | Self::Cifar10(p) => p,
        }
    }

    /// Loads the images, converted to `opts.channels × opts.size`.
    ///
    /// # Errors
    /// Those of [`load_image_folder`], [`load_mnist_dir`] or [`load_cifar10_dir`].
    pub fn open(&self, opts: &LoadOptions) -> Result<Dataset, DataError> {
        match self {
            Self::ImageFolder(p) => load_image_folder(p, opts),
            Self::Mnist(p) | Self::FashionMnist(p) => load_mnist_dir(p, opts),
            Self::Cifar10(p) => load_cifar10_dir(p, opts),
        }
    }
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (kind, path) = match spec.split_once(':') {
            Some((prefix, rest))
                if prefix.len() > 1
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                (prefix.to_ascii_lowercase(), rest)
            }
            _ => ("folder".to_string(), spec),
        };
        if path.is_empty() {
            return Err(DataError::EmptySpec {
                spec: spec.to_string(),
            });
        }
        let path = PathBuf::from(path);
        Ok(match kind.as_str() {
            "folder" => Self::ImageFolder(path),
            "mnist" => Self::Mnist(path),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Self::FashionMnist(path),
            "cifar10" | "cifar-10" => Self::Cifar10(path),
            _ => {
                return Err(DataError::UnknownSpecPrefix {
                    spec: spec.to_string(),
                    prefix: kind,
                });
            }
        })
    }
}

impl fmt::Display for DataSpec {
    /// The canonical spec; parsing it gives back the same value. Folders get the explicit
    /// `folder:` prefix only when their path would otherwise read as a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().display();
        match self {
            Self::ImageFolder(p) => {
                let s = p.to_string_lossy();
                match s.parse::<DataSpec>() {
                    Ok(Self::ImageFolder(q)) if q == *p => write!(f, "{path}"),
                    _ => write!(f, "folder:{path}"),
                }
            }
            Self::Mnist(_) => write!(f, "mnist:{path}"),
            Self::FashionMnist(_) => write!(f, "fashion-mnist:{path}"),
            Self::Cifar10(_) => write!(f, "cifar10:{path}"),
        }
    }
}

impl TryFrom<String> for DataSpec {
    type Error = DataError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DataSpec> for String {
    fn from(spec: DataSpec) -> Self {
        spec.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DataSpec, DataError> {
        s.parse()
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            parse("imgs/celeba").unwrap(),
            DataSpec::ImageFolder("imgs/celeba".into())
        );
        assert_eq!(
            parse("folder:a:b").unwrap(),
            DataSpec::ImageFolder("a:b".into())
        );
        assert_eq!(
            parse("mnist:data/mnist").unwrap(),
            DataSpec::Mnist("data/mnist".into())
        );
        assert_eq!(
            parse("fashion-mnist:/d").unwrap(),
            DataSpec::FashionMnist("/d".into())
        );
        assert_eq!(parse("cifar10:c").unwrap(), DataSpec::Cifar10("c".into()));
        assert_eq!(parse("CIFAR-10:c").unwrap(), DataSpec::Cifar10("c".into()));
        // A drive letter is a path, not a prefix.
        assert_eq!(
            parse(r"C:\imgs").unwrap(),
            DataSpec::ImageFolder(r"C:\imgs".into())
        );
        // A ':' after a path separator is part of the path.
        assert_eq!(
            parse("./a:b").unwrap(),
            DataSpec::ImageFolder("./a:b".into())
        );
    }

    #[test]
    fn rejects_unknown_prefix_and_empty_path() {
        let err = parse("minst:data").unwrap_err();
        assert!(matches!(&err, DataError::UnknownSpecPrefix { prefix, .. } if prefix == "minst"));
        assert!(err.to_string().contains("mnist:<dir>"), "{err}");
        assert!(matches!(parse("mnist:"), Err(DataError::EmptySpec { .. })));
        assert!(matches!(parse(""), Err(DataError::EmptySpec { .. })));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "imgs",
            "a:b",
            "folder:ab:c",
            "mnist:m",
            "fashion-mnist:f",
            "cifar10:c",
        ] {
            let spec = parse(s).unwrap();
            assert_eq!(spec.to_string(), s);
            assert_eq!(parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let spec = parse("cifar10:data/cifar").unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, "\"cifar10:data/cifar\"");
        assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), spec);
        assert!(serde_json::from_str::<DataSpec>("\"bogus:x\"").is_err());
    }
}
