//! Two trainers on two threads of one process take exactly the steps each takes alone: every
//! random number (initial weights, timesteps, ε, dropout masks) comes from the run's own seed
//! on the host, none from Burn's process-wide device RNG.

mod common;

use common::{B, config, dataset, tmp_dir};
use ddpm_train::Trainer;

const STEPS: usize = 4;

/// The losses of `STEPS` steps of the common config with `seed` (dropout 0.1 included).
fn losses(seed: u64, name: &str) -> Vec<f64> {
    let dir = tmp_dir(name);
    let mut t = Trainer::<B>::new(
        config(STEPS).with_seed(seed),
        &dir,
        dataset(),
        &Default::default(),
    )
    .unwrap();
    let out = (0..STEPS).map(|_| t.train_step().unwrap().loss).collect();
    let _ = std::fs::remove_dir_all(dir);
    out
}

#[test]
fn concurrent_trainers_match_solo_runs() {
    let solo_a = losses(7, "solo-a");
    let solo_b = losses(8, "solo-b");
    assert_ne!(solo_a, solo_b, "different seeds, different runs");
    let (par_a, par_b) = std::thread::scope(|s| {
        let a = s.spawn(|| losses(7, "par-a"));
        let b = s.spawn(|| losses(8, "par-b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(par_a, solo_a, "seed 7 alone vs beside another trainer");
    assert_eq!(par_b, solo_b, "seed 8 alone vs beside another trainer");
}

#[test]
fn dropout_changes_the_loss_and_follows_the_seed() {
    // Same seed, with and without dropout: the first step's weights are equal, so only the
    // dropout masks can make the first losses differ.
    let dir = tmp_dir("no-dropout");
    let mut no_dropout = config(1).with_seed(7);
    no_dropout.unet = common::small_unet().with_dropout(0.0);
    let mut t = Trainer::<B>::new(no_dropout, &dir, dataset(), &Default::default()).unwrap();
    let without = t.train_step().unwrap().loss;
    let _ = std::fs::remove_dir_all(dir);
    let with = losses(7, "with-dropout")[0];
    assert_ne!(with, without);
    assert_eq!(with, losses(7, "with-dropout-again")[0]);
}
