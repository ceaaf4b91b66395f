//! [`BatchIter`]: an endless, seeded, resumable stream of [`Batch`]es, prepared on a
//! background thread.
//!
//! Each epoch's order and flips are a pure function of (seed, epoch), so the iterator's whole
//! state is [`BatchIterState`] `{ epoch, index }`: a run stopped after k batches and resumed
//! from the saved state sees exactly the batches an uninterrupted run would.
//!
//! NOTE: one background thread (std, bounded channel) prepares batches. Preparing one is a
//! gather plus a table lookup per pixel (≈ 1 ms for 128 × 3 × 32 × 32), far below a U-Net
//! step, so a pool would not help; images are decoded up front by the loaders.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use burn::config::Config;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::batch::write_scaled;
use crate::{Batch, DataError, Dataset};

/// How to batch a [`Dataset`].
#[derive(Config, Debug, PartialEq)]
pub struct BatchIterConfig {
    /// Images per batch (paper: 128 for CIFAR10, 64 for the 256 × 256 datasets).
    pub batch_size: usize,
    /// The run's seed; each epoch's order and flips derive from it and the epoch number.
    pub seed: u64,
    /// Visit the images in a new random order each epoch. Default: true.
    #[config(default = true)]
    pub shuffle: bool,
    /// Mirror each image left–right with probability ½. Default: false. The paper used flips
    /// for CIFAR10, CelebA-HQ and LSUN Church/Cat (Appendix B); not for digits.
    #[config(default = false)]
    pub random_flip: bool,
    /// Drop an epoch's last, incomplete batch so every batch has `batch_size` images.
    /// Default: true (the official code's `drop_remainder=True`).
    #[config(default = true)]
    pub drop_last: bool,
    /// Batches prepared ahead on a background thread; 0 prepares each in `next()`, on the
    /// caller's thread. Default: 2.
    #[config(default = 2)]
    pub prefetch: usize,
}

/// Where a [`BatchIter`] is: the epoch and the position, in that epoch's order, of the next
/// image. Save it with the checkpoint and pass it to [`BatchIterConfig::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct BatchIterState {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Position of the next batch's first image in the epoch's order.
    pub index: usize,
}

impl BatchIterConfig {
    /// An iterator over `dataset` from the start of epoch 0.
    ///
    /// # Errors
    /// [`DataError::ZeroBatchSize`]; [`DataError::BatchLargerThanDataset`] with `drop_last`.
    pub fn init(&self, dataset: Arc<Dataset>) -> Result<BatchIter, DataError> {
        self.resume(dataset, BatchIterState::default())
    }

    /// An iterator over `dataset` that continues from `state` (from [`BatchIter::state`]).
    ///
    /// # Errors
    /// As [`init`](Self::init), and [`DataError::BadState`] if `state.index` is not a batch
    /// start within the dataset.
    pub fn resume(
        &self,
        dataset: Arc<Dataset>,
        state: BatchIterState,
    ) -> Result<BatchIter, DataError> {
        let n = dataset.len();
        if self.batch_size == 0 {
            return Err(DataError::ZeroBatchSize);
        }
        if n == 0 || (self.drop_last && self.batch_size > n) {
            return Err(DataError::BatchLargerThanDataset {
                batch_size: self.batch_size,
                len: n,
            });
        }
        let reason = if state.index >= n {
            Some("index is past the end of the dataset")
        } else if !state.index.is_multiple_of(self.batch_size) {
            Some("index is not a multiple of the batch size")
        } else if self.drop_last && state.index + self.batch_size > n {
            Some("index starts the incomplete batch that drop_last skips")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(DataError::BadState { state, reason });
        }
        let mut producer = Producer {
            dataset: Arc::clone(&dataset),
            config: self.clone(),
            state,
            plan: None,
        };
        let source = if self.prefetch == 0 {
            Source::Inline(producer)
        } else {
            let (tx, rx) = sync_channel(self.prefetch);
            let handle = std::thread::Builder::new()
                .name("ddpm-data-prefetch".into())
                .spawn(move || {
                    // Ends when the iterator (the receiver) is dropped.
                    while tx.send(producer.produce()).is_ok() {}
                })
                .map_err(|e| DataError::io("<prefetch thread>", e))?;
            Source::Thread {
                rx: Some(rx),
                handle: Some(handle),
            }
        };
        Ok(BatchIter {
            dataset,
            config: self.clone(),
            state,
            source,
        })
    }
}

/// The order and flips of one epoch.
struct EpochPlan {
    epoch: u64,
    order: Vec<usize>,
    flips: Vec<bool>,
}

/// A ChaCha key unique to (seed, epoch, stream): independent streams per epoch and purpose.
fn rng(seed: u64, epoch: u64, stream: u64) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&stream.to_le_bytes());
    key[24..].copy_from_slice(b"ddpmdata");
    StdRng::from_seed(key)
}

const ORDER_STREAM: u64 = 1;
const FLIP_STREAM: u64 = 2;

impl EpochPlan {
    fn new(config: &BatchIterConfig, n: usize, epoch: u64) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        if config.shuffle {
            order.shuffle(&mut rng(config.seed, epoch, ORDER_STREAM));
        }
        let flips = if config.random_flip {
            let mut r = rng(config.seed, epoch, FLIP_STREAM);
            (0..n).map(|_| r.random::<bool>()).collect()
        } else {
            vec![false; n]
        };
        Self {
            epoch,
            order,
            flips,
        }
    }
}

/// The state after the batch that starts at `state`.
fn advance(state: BatchIterState, n: usize, config: &BatchIterConfig) -> BatchIterState {
    let index = state.index + config.batch_size;
    let done = if config.drop_last {
        index + config.batch_size > n
    } else {
        index >= n
    };
    if done {
        BatchIterState {
            epoch: state.epoch + 1,
            index: 0,
        }
    } else {
        BatchIterState {
            epoch: state.epoch,
            index,
        }
    }
}

/// Builds batches in order from a state; runs on the prefetch thread or inline.
struct Producer {
    dataset: Arc<Dataset>,
    config: BatchIterConfig,
    state: BatchIterState,
    plan: Option<EpochPlan>,
}

impl Producer {
    fn produce(&mut self) -> Batch {
        let ds = &*self.dataset;
        let n = ds.len();
        let position = self.state;
        if self.plan.as_ref().is_none_or(|p| p.epoch != position.epoch) {
            self.plan = Some(EpochPlan::new(&self.config, n, position.epoch));
        }
        let plan = self.plan.as_ref().expect("plan was just built");
        let end = (position.index + self.config.batch_size).min(n);
        let b = end - position.index;
        let mut images = Vec::with_capacity(b * ds.image_len());
        for p in position.index..end {
            write_scaled(
                &mut images,
                ds.image(plan.order[p]),
                ds.width(),
                plan.flips[p],
            );
        }
        self.state = advance(position, n, &self.config);
        Batch {
            images,
            shape: [b, ds.channels(), ds.height(), ds.width()],
            indices: plan.order[position.index..end].to_vec(),
            flipped: plan.flips[position.index..end].to_vec(),
            position,
        }
    }
}

enum Source {
    Inline(Producer),
    Thread {
        rx: Option<Receiver<Batch>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// An endless iterator of [`Batch`]es over a [`Dataset`]: epoch after epoch, each in its own
/// seeded order, with optional seeded flips. `next()` never returns `None`; take as many
/// batches as training steps.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use ddpm_data::{BatchIterConfig, Dataset};
///
/// let ds = Arc::new(Dataset::from_raw(vec![0, 255, 255, 0, 7, 7, 7, 7], 2, 1, 2, 2)?);
/// let config = BatchIterConfig::new(1, 42).with_random_flip(true);
/// let mut it = config.init(ds.clone())?;
/// let first = it.next().unwrap();
/// let saved = it.state(); // store with the checkpoint
/// let second = it.next().unwrap();
/// let mut resumed = config.resume(ds, saved)?;
/// assert_eq!(resumed.next().unwrap(), second);
/// assert_eq!(first.shape, [1, 1, 2, 2]);
/// # Ok::<(), ddpm_data::DataError>(())
/// ```
pub struct BatchIter {
    dataset: Arc<Dataset>,
    config: BatchIterConfig,
    state: BatchIterState,
    source: Source,
}

impl BatchIter {
    /// The position of the batch the next `next()` returns; resume from it to continue exactly.
    pub fn state(&self) -> BatchIterState {
        self.state
    }

    /// Batches per epoch: ⌊N / batch⌋ with `drop_last`, else ⌈N / batch⌉.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The dataset being batched.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &BatchIterConfig {
        &self.config
    }
}

impl Iterator for BatchIter {
    type Item = Batch;

    /// The next batch; always `Some`.
    ///
    /// # Panics
    /// Re-raises a panic of the prefetch thread (a bug in this crate).
    fn next(&mut self) -> Option<Batch> {
        let batch = match &mut self.source {
            Source::Inline(producer) => producer.produce(),
            Source::Thread { rx, handle } => {
                match rx.as_ref().expect("receiver lives until drop").recv() {
                    Ok(batch) => batch,
                    Err(_) => {
                        // The producer only stops early by panicking.
                        let h = handle.take().expect("prefetch thread joined once");
                        match h.join() {
                            Err(panic) => std::panic::resume_unwind(panic),
                            Ok(()) => {
                                unreachable!("the prefetch thread ended while its receiver lives")
                            }
                        }
                    }
                }
            }
        };
        debug_assert_eq!(batch.position, self.state);
        self.state = advance(self.state, self.dataset.len(), &self.config);
        Some(batch)
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        if let Source::Thread { rx, handle } = &mut self.source {
            // Closing the channel makes the producer's next `send` fail, ending its loop.
            drop(rx.take());
            if let Some(h) = handle.take()
                && let Err(panic) = h.join()
                && !std::thread::panicking()
            {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl std::fmt::Debug for BatchIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchIter")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("len", &self.dataset.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` 1×2×3 images; image i is filled with the byte i (its first pixel is i, row-reversed
    /// images are distinguished by the second pixel i + 1).
    fn dataset(n: usize) -> Arc<Dataset> {
        let data = (0..n)
            .flat_map(|i| (0..6).map(move |k| (i * 7 + k) as u8))
            .collect();
        Arc::new(Dataset::from_raw(data, n, 1, 2, 3).unwrap())
    }

    fn take(config: &BatchIterConfig, ds: &Arc<Dataset>, k: usize) -> Vec<Batch> {
        config.init(Arc::clone(ds)).unwrap().take(k).collect()
    }

    #[test]
    fn same_seed_same_batches_other_seed_other_order() {
        let ds = dataset(20);
        let config = BatchIterConfig::new(4, 7).with_random_flip(true);
        let a = take(&config, &ds, 12);
        assert_eq!(a, take(&config, &ds, 12));
        let b = take(
            &BatchIterConfig {
                seed: 8,
                ..config.clone()
            },
            &ds,
            12,
        );
        assert_ne!(
            a.iter().map(|x| x.indices.clone()).collect::<Vec<_>>(),
            b.iter().map(|x| x.indices.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_epoch_is_a_new_permutation() {
        let ds = dataset(10);
        let config = BatchIterConfig::new(3, 1).with_drop_last(false);
        let it = config.init(Arc::clone(&ds)).unwrap();
        assert_eq!(it.batches_per_epoch(), 4);
        let batches: Vec<Batch> = it.take(8).collect();
        let epoch = |e: usize| -> Vec<usize> {
            batches[4 * e..4 * e + 4]
                .iter()
                .flat_map(|b| b.indices.clone())
                .collect()
        };
        for e in 0..2 {
            let mut sorted = epoch(e);
            sorted.sort();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(epoch(0), epoch(1));
        assert_eq!(batches[3].shape, [1, 1, 2, 3]); // the incomplete last batch
        assert_eq!(batches[4].position, BatchIterState { epoch: 1, index: 0 });
    }

    #[test]
    fn drop_last_keeps_full_batches_and_no_shuffle_is_identity() {
        let ds = dataset(10);
        let config = BatchIterConfig::new(3, 0).with_shuffle(false);
        let batches = take(&config, &ds, 4);
        assert!(batches.iter().all(|b| b.shape == [3, 1, 2, 3]));
        assert_eq!(batches[2].indices, vec![6, 7, 8]);
        assert_eq!(batches[3].indices, vec![0, 1, 2]); // image 9 dropped, epoch 1
        assert_eq!(batches[3].position.epoch, 1);
        assert!(batches.iter().all(|b| b.flipped.iter().all(|&f| !f)));
    }

    #[test]
    fn resume_from_a_saved_state_sees_the_same_batches() {
        let ds = dataset(23);
        for prefetch in [0, 3] {
            let config = BatchIterConfig::new(5, 42)
                .with_random_flip(true)
                .with_prefetch(prefetch);
            let straight = take(&config, &ds, 30);
            let mut first = config.init(Arc::clone(&ds)).unwrap();
            let head: Vec<Batch> = first.by_ref().take(13).collect();
            let saved = serde_json::to_string(&first.state()).unwrap();
            drop(first);
            let state: BatchIterState = serde_json::from_str(&saved).unwrap();
            let tail: Vec<Batch> = config
                .resume(Arc::clone(&ds), state)
                .unwrap()
                .take(17)
                .collect();
            assert_eq!(head.as_slice(), &straight[..13]);
            assert_eq!(tail.as_slice(), &straight[13..], "prefetch {prefetch}");
        }
    }

    #[test]
    fn prefetch_does_not_change_batches() {
        let ds = dataset(17);
        let config = BatchIterConfig::new(4, 3).with_random_flip(true);
        assert_eq!(
            take(&config.clone().with_prefetch(0), &ds, 20),
            take(&config.with_prefetch(4), &ds, 20)
        );
    }

    #[test]
    fn flips_are_seeded_and_mirror_rows() {
        let ds = dataset(64);
        let config = BatchIterConfig::new(64, 5)
            .with_random_flip(true)
            .with_shuffle(false);
        let b = &take(&config, &ds, 1)[0];
        let flips = b.flipped.iter().filter(|&&f| f).count();
        assert!((16..=48).contains(&flips), "{flips} of 64 flipped");
        assert_eq!(b.flipped, take(&config, &ds, 1)[0].flipped);
        let to_byte = |x: f32| ((x + 1.0) / 2.0 * 255.0).round() as u8;
        for (k, (&i, &f)) in b.indices.iter().zip(&b.flipped).enumerate() {
            let got: Vec<u8> = b.images[6 * k..6 * k + 6]
                .iter()
                .map(|&x| to_byte(x))
                .collect();
            let img = ds.image(i);
            let want: Vec<u8> = if f {
                vec![img[2], img[1], img[0], img[5], img[4], img[3]]
            } else {
                img.to_vec()
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn values_are_scaled_to_minus_one_one() {
        let ds = Arc::new(Dataset::from_raw(vec![0, 255, 0, 255], 1, 1, 2, 2).unwrap());
        let b = &take(&BatchIterConfig::new(1, 0), &ds, 1)[0];
        assert_eq!(b.images, vec![-1.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn bad_configs_and_states_are_errors() {
        let ds = dataset(10);
        let err =
            |c: &BatchIterConfig, s: BatchIterState| c.resume(Arc::clone(&ds), s).unwrap_err();
        let config = BatchIterConfig::new(4, 0);
        assert!(matches!(
            err(&BatchIterConfig::new(0, 0), Default::default()),
            DataError::ZeroBatchSize
        ));
        assert!(matches!(
            err(&BatchIterConfig::new(11, 0), Default::default()),
            DataError::BatchLargerThanDataset {
                batch_size: 11,
                len: 10
            }
        ));
        assert!(
            BatchIterConfig::new(11, 0)
                .with_drop_last(false)
                .init(Arc::clone(&ds))
                .is_ok()
        );
        for index in [3, 8, 10] {
            let state = BatchIterState { epoch: 2, index };
            assert!(
                matches!(err(&config, state), DataError::BadState { .. }),
                "index {index}"
            );
        }
        assert!(
            config
                .resume(Arc::clone(&ds), BatchIterState { epoch: 2, index: 4 })
                .is_ok()
        );
    }

    #[test]
    fn state_tracks_consumed_batches_not_prefetched_ones() {
        let ds = dataset(10);
        let mut it = BatchIterConfig::new(2, 0)
            .with_prefetch(4)
            .init(ds)
            .unwrap();
        assert_eq!(it.state(), BatchIterState::default());
        std::thread::sleep(std::time::Duration::from_millis(20)); // let the producer run ahead
        it.next();
        assert_eq!(it.state(), BatchIterState { epoch: 0, index: 2 });
        for _ in 0..4 {
            it.next();
        }
        assert_eq!(it.state(), BatchIterState { epoch: 1, index: 0 });
    }
}
