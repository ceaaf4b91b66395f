//! Choosing a feature extractor by name, as the `ddpm` CLI's `--features` does.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::{DigitClassifier, EvalError, FeatureExtractor, InceptionV3};

/// A feature extractor by name: `digits` (the bundled digit classifier), `digits:PATH` (a
/// digit classifier saved by `train_digits`), or `inception:PATH` (pytorch-fid's Inception-v3
/// from a weights file: safetensors, or the `.pth` with the crate feature `pytorch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSpec {
    /// The digit classifier bundled with the crate (28×28 grey digits).
    Digits,
    /// A digit classifier from a weights file.
    DigitsFile(PathBuf),
    /// pytorch-fid's Inception-v3 from a weights file.
    Inception(PathBuf),
}

impl FeatureSpec {
    /// The name its Fréchet distance goes by: `fld` (Fréchet digit distance) for the digit
    /// classifier, `fid` for Inception.
    pub fn metric_name(&self) -> &'static str {
        match self {
            Self::Digits | Self::DigitsFile(_) => "fld",
            Self::Inception(_) => "fid",
        }
    }

    /// Loads the extractor on `device`.
    ///
    /// # Errors
    /// The loaders' errors, naming the file.
    pub fn load<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<Box<dyn FeatureExtractor<B> + Send>, EvalError> {
        Ok(match self {
            Self::Digits => Box::new(DigitClassifier::<B>::pretrained(device)?),
            Self::DigitsFile(path) => Box::new(DigitClassifier::<B>::load(path, device)?),
            Self::Inception(path) => Box::new(InceptionV3::<B>::from_file(path, device)?),
        })
    }
}

impl FromStr for FeatureSpec {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| EvalError::BadSetting {
            setting: "features",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        match s.split_once(':') {
            None if s == "digits" => Ok(Self::Digits),
            Some(("digits", path)) if !path.is_empty() => Ok(Self::DigitsFile(path.into())),
            Some(("inception", path)) if !path.is_empty() => Ok(Self::Inception(path.into())),
            Some(("inception", _)) | None if s.starts_with("inception") => Err(bad(
                "inception needs its weights file: inception:PATH (pytorch-fid's \
                 pt_inception-2015-12-05-6726825d.pth, or it converted to safetensors)",
            )),
            _ => Err(bad("expected digits, digits:PATH or inception:PATH")),
        }
    }
}

impl fmt::Display for FeatureSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digits => write!(f, "digits"),
            Self::DigitsFile(p) => write!(f, "digits:{}", p.display()),
            Self::Inception(p) => write!(f, "inception:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for s in [
            "digits",
            "digits:w.safetensors",
            "inception:/x/pt_inception.pth",
        ] {
            let spec: FeatureSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "digits".parse::<FeatureSpec>().unwrap().metric_name(),
            "fld"
        );
        assert_eq!(
            "inception:a".parse::<FeatureSpec>().unwrap().metric_name(),
            "fid"
        );
        for bad in ["inception", "inception:", "digit", "", "vgg:x"] {
            let err = bad.parse::<FeatureSpec>().unwrap_err().to_string();
            assert!(err.contains("features"), "{bad}: {err}");
        }
        assert!(
            "inception"
                .parse::<FeatureSpec>()
                .unwrap_err()
                .to_string()
                .contains("weights file")
        );
    }
}
