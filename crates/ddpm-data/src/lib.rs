//! Training images for DDPM (Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models",
//! arXiv:2006.11239v2): loading, scaling to [-1, 1] and seeded, resumable batching.
//!
//! Sources, all converted to the model's channels and size (center crop + resize):
//! - a folder of PNG/JPEG images, searched recursively, decoded on all cores
//!   ([`load_image_folder`]);
//! - MNIST / Fashion-MNIST IDX files, raw or `.gz` ([`load_mnist_dir`], [`load_idx_images`]);
//!   MNIST is bundled in the repository's `data/mnist/`;
//! - CIFAR-10's binary batches ([`load_cifar10_dir`], [`load_cifar10_batch`]).
//!
//! [`DataSpec`] parses the CLI's `--data` argument and opens any of them; [`ImageRef`] names one
//! image (a file, or `SPEC#INDEX`). Images stay in memory
//! as `u8` ([`Dataset`]); [`BatchIter`] turns them into [`Batch`]es of x₀ = 2 · (v / 255) − 1
//! (§3.3, the convention of Eq. 13's decoder), shuffled per epoch from the run's seed, with
//! optional random horizontal flips (Appendix B), prepared on a background thread. Its state
//! is `{ epoch, index }`, so a resumed run sees exactly the batches of an uninterrupted one.
//!
//! Every failure is a [`DataError`] naming the file: a corrupt image, a wrong IDX magic
//! number, a truncated file, an empty folder. Bad images can be skipped instead
//! ([`LoadOptions::skip_bad`]); they are listed in the [`LoadReport`], never dropped silently.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use ddpm_data::{BatchIterConfig, DataSpec, ImageSize, LoadOptions};
//!
//! let spec: DataSpec = "mnist:data/mnist".parse()?;
//! let dataset = Arc::new(spec.open(&LoadOptions::new(1, ImageSize::square(32)))?);
//! let mut batches = BatchIterConfig::new(128, 0).init(dataset)?;
//! let batch = batches.next().unwrap(); // [128, 1, 32, 32], values in [-1, 1]
//! let state = batches.state(); // save with the checkpoint; `resume` continues from it
//! # let _ = (batch, state);
//! # Ok::<(), ddpm_data::DataError>(())
//! ```
#![warn(missing_docs)]

mod batch;
mod batch_iter;
mod cifar;
mod dataset;
mod error;
mod folder;
mod idx;
mod image_ref;
mod options;
mod preprocess;
mod spec;

pub use batch::{Batch, scale_to_model_range};
pub use batch_iter::{BatchIter, BatchIterConfig, BatchIterState};
pub use cifar::{
    CIFAR10_RECORD_LEN, CIFAR10_RECORDS_PER_BATCH, CIFAR10_SIDE, load_cifar10_batch,
    load_cifar10_dir,
};
pub use dataset::{Dataset, LoadReport, SkippedFile};
pub use error::DataError;
pub use folder::{IMAGE_EXTENSIONS, load_image_folder};
pub use idx::{IDX_IMAGES_MAGIC, load_idx_images, load_mnist_dir};
pub use image_ref::ImageRef;
pub use options::{ImageSize, LoadOptions, Split};
pub use spec::DataSpec;
