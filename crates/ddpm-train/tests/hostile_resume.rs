//! `--resume` under hostile input (issue #14, items 6, 7 and 10): changed settings, other data,
//! a step count below the checkpoint's, damaged checkpoints, leftovers of a killed checkpoint
//! write. Each case fails loudly naming what is wrong, or is honoured and recorded.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{B, config, dataset, tmp_dir};
use ddpm_data::Dataset;
use ddpm_train::checkpoint::{CHECKPOINTS_DIR, list_checkpoints, read_train_config};
use ddpm_train::{TrainConfig, TrainError, Trainer};

/// A run of `steps` steps with a checkpoint every `every` steps.
fn trained(name: &str, steps: usize, every: usize) -> PathBuf {
    let dir = tmp_dir(name);
    let mut t = Trainer::<B>::new(
        config(steps).with_checkpoint_every(every),
        &dir,
        dataset(),
        &Default::default(),
    )
    .unwrap();
    t.run(|_| {}).unwrap();
    dir
}

fn resume_as(dir: &Path, c: TrainConfig) -> Result<Trainer<B>, TrainError> {
    Trainer::<B>::resume_with_config(dir, dataset(), c, &Default::default())
}

fn steps_on_disk(dir: &Path) -> Vec<usize> {
    list_checkpoints(dir).unwrap().iter().map(|c| c.0).collect()
}

/// Before: `--resume --steps 3` on a run at step 4 loaded step 4, trained nothing and reported
/// success.
#[test]
fn fewer_steps_than_the_checkpoint_is_an_error() {
    let dir = trained("hostile-steps", 4, 1000);
    let err = Trainer::<B>::resume(&dir, dataset(), Some(3), &Default::default())
        .err()
        .unwrap();
    match &err {
        TrainError::StepsBehindCheckpoint { steps, step, .. } => {
            assert_eq!((*steps, *step), (3, 4))
        }
        other => panic!("expected StepsBehindCheckpoint, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("already at step 4"), "{msg}");
    assert!(msg.contains("at least 4"), "{msg}");
    // Nothing was changed: the saved step count is still 4, no resume was logged.
    assert_eq!(read_train_config(&dir).unwrap().steps, 4);
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(!metrics.contains("resume"), "{metrics}");
    // The same total is fine (nothing left to do), and a larger one is honoured and recorded.
    let t = Trainer::<B>::resume(&dir, dataset(), Some(4), &Default::default()).unwrap();
    assert_eq!((t.step(), t.config().steps), (4, 4));
    drop(t);
    let mut t = Trainer::<B>::resume(&dir, dataset(), Some(5), &Default::default()).unwrap();
    t.run(|_| {}).unwrap();
    assert_eq!(t.step(), 5);
    assert_eq!(read_train_config(&dir).unwrap().steps, 5);
    let _ = std::fs::remove_dir_all(dir);
}

/// Before: a changed batch size, learning rate or seed was silently replaced by the saved one.
#[test]
fn settings_that_shape_a_step_are_refused_by_name_and_others_honoured() {
    let dir = trained("hostile-settings", 2, 1000);
    let saved = read_train_config(&dir).unwrap();
    let saved_file = std::fs::read(dir.join("train_config.json")).unwrap();
    let refused: [(&str, TrainConfig, &str, &str); 6] = [
        ("batch_size", saved.clone().with_batch_size(8), "6", "8"),
        (
            "learning_rate",
            saved.clone().with_learning_rate(5e-3),
            "0.001",
            "0.005",
        ),
        ("seed", saved.clone().with_seed(8), "7", "8"),
        ("warmup_steps", saved.clone().with_warmup_steps(9), "5", "9"),
        ("ema_decay", saved.clone().with_ema_decay(0.5), "0.9", "0.5"),
        (
            "random_flip",
            saved.clone().with_random_flip(false),
            "true",
            "false",
        ),
    ];
    for (setting, requested, was, now) in refused {
        let err = resume_as(&dir, requested).err().unwrap();
        let msg = err.to_string();
        assert!(
            matches!(&err, TrainError::ResumeMismatch { setting: s, .. } if s == setting),
            "{setting}: {msg}"
        );
        assert!(msg.contains(&format!("{setting} = {was}")), "{msg}");
        assert!(msg.contains(&format!("{setting} = {now}")), "{msg}");
        assert!(msg.contains("train_config.json"), "{msg}");
    }
    // Another model: the first differing U-Net field is named.
    let mut other = saved.clone();
    other.unet.block_out_channels = vec![16, 16];
    let err = resume_as(&dir, other).err().unwrap();
    assert!(
        err.to_string()
            .contains("unet.block_out_channels = [16,16]"),
        "{err}"
    );
    // Nothing was written by the refused resumes.
    assert_eq!(
        std::fs::read(dir.join("train_config.json")).unwrap(),
        saved_file
    );

    // Step count and cadence are honoured, saved in train_config.json and logged.
    let mut t = resume_as(
        &dir,
        saved
            .clone()
            .with_steps(3)
            .with_checkpoint_every(1)
            .with_log_every(1),
    )
    .unwrap();
    let report = t.resume_report().unwrap();
    let mut changed: Vec<String> = report.changed.iter().map(|c| c.to_string()).collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            "checkpoint_every: 1000 -> 1",
            "log_every: 5 -> 1",
            "steps: 2 -> 3"
        ]
    );
    t.run(|_| {}).unwrap();
    let now = read_train_config(&dir).unwrap();
    assert_eq!((now.steps, now.checkpoint_every, now.log_every), (3, 1, 1));
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let resume_line: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "resume")
        .expect("a resume line in metrics.jsonl");
    assert_eq!(resume_line["step"], 2);
    assert_eq!(resume_line["changed"]["steps"]["saved"], 2);
    assert_eq!(resume_line["changed"]["steps"]["now"], 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// Before: resuming with other images of the same count and size continued silently.
#[test]
fn other_data_of_the_same_size_is_refused() {
    let dir = trained("hostile-data", 2, 1000);
    let original = dataset();
    let mut bytes = original.as_bytes().to_vec();
    bytes[17 * 64 + 5] ^= 0x40; // one pixel of one image
    let changed = Arc::new(Dataset::from_raw(bytes, 40, 1, 8, 8).unwrap());
    let err = Trainer::<B>::resume(&dir, changed, Some(3), &Default::default())
        .err()
        .unwrap();
    match &err {
        TrainError::DatasetChanged { saved, found, .. } => {
            assert_eq!((saved.len, found.len), (40, 40));
            assert_ne!(saved.hash, found.hash);
        }
        other => panic!("expected DatasetChanged, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("40 images of 1×8×8"), "{msg}");
    assert!(msg.contains("step-00000002"), "{msg}");
    // The same images in another order are other data too (the saved position points into
    // the order).
    let mut swapped = original.as_bytes().to_vec();
    swapped[..64].copy_from_slice(original.image(1));
    swapped[64..128].copy_from_slice(original.image(0));
    let swapped = Arc::new(Dataset::from_raw(swapped, 40, 1, 8, 8).unwrap());
    assert!(matches!(
        Trainer::<B>::resume(&dir, swapped, Some(3), &Default::default()),
        Err(TrainError::DatasetChanged { .. })
    ));
    // The run's own data resume.
    let t = Trainer::<B>::resume(&dir, original, Some(3), &Default::default()).unwrap();
    assert_eq!(t.step(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

fn truncate(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

/// Before: a truncated newest checkpoint made `--resume` fail blaming a "format changed since
/// 0.14.0", although an older checkpoint was intact.
#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_newest_intact_one() {
    let dir = trained("hostile-truncated", 6, 2);
    assert_eq!(steps_on_disk(&dir), [2, 4, 6]);
    let ckpts = dir.join(CHECKPOINTS_DIR);
    // Step 6: its model record cut in half (caught by its checksum). Step 4: written by a
    // version without checksums, its EMA record cut in half (caught by the decoder).
    truncate(&ckpts.join("step-00000006/model.bin"));
    std::fs::remove_file(ckpts.join("step-00000004/checksums.json")).unwrap();
    truncate(&ckpts.join("step-00000004/ema.bin"));

    let mut t = Trainer::<B>::resume(&dir, dataset(), Some(6), &Default::default()).unwrap();
    assert_eq!(t.step(), 2);
    let report = t.resume_report().unwrap().clone();
    assert_eq!(report.step, 2);
    assert_eq!(report.damaged.len(), 2);
    let (d6, d4) = (&report.damaged[0], &report.damaged[1]);
    assert!(d6.file.ends_with("step-00000006/model.bin"), "{d6}");
    assert!(d6.reason.starts_with("truncated:"), "{d6}");
    assert!(d4.file.ends_with("step-00000004/ema.bin"), "{d4}");
    assert!(d4.reason.starts_with("truncated"), "{d4}");
    for d in &report.damaged {
        assert!(!d.to_string().contains("0.14.0"), "{d}");
    }
    // Moved aside: no longer listed, still there to inspect.
    assert_eq!(
        d6.moved_to.as_deref(),
        Some(ckpts.join("damaged-step-00000006").as_path())
    );
    assert!(ckpts.join("damaged-step-00000004/ema.bin").is_file());
    assert_eq!(steps_on_disk(&dir), [2]);

    // The run goes on from step 2 and writes intact checkpoints that resume.
    t.run(|_| {}).unwrap();
    drop(t);
    assert_eq!(steps_on_disk(&dir), [2, 4, 6]);
    let t = Trainer::<B>::resume(&dir, dataset(), Some(6), &Default::default()).unwrap();
    assert_eq!(t.step(), 6);
    assert!(t.resume_report().unwrap().damaged.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// With no intact checkpoint left, the error names every damaged file and nothing is moved.
#[test]
fn no_intact_checkpoint_names_each_damaged_file() {
    let dir = trained("hostile-all-damaged", 3, 1);
    assert_eq!(steps_on_disk(&dir), [1, 2, 3]);
    let ckpts = dir.join(CHECKPOINTS_DIR);
    // One bit flipped in the middle of a record: same length, other contents.
    let model = ckpts.join("step-00000003/model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&model, bytes).unwrap();
    truncate(&ckpts.join("step-00000002/state.json"));
    truncate(&ckpts.join("step-00000001/optimizer.bin"));
    let err = Trainer::<B>::resume(&dir, dataset(), None, &Default::default())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(&err, TrainError::NoIntactCheckpoint { damaged, .. } if damaged.len() == 3),
        "{msg}"
    );
    assert!(
        msg.contains("step-00000003/model.bin: damaged: its content hash"),
        "{msg}"
    );
    assert!(
        msg.contains("step-00000002/state.json: not valid JSON"),
        "{msg}"
    );
    assert!(
        msg.contains("step-00000001/optimizer.bin: truncated"),
        "{msg}"
    );
    assert!(msg.contains("start a new run"), "{msg}");
    assert!(!msg.contains("0.14.0"), "{msg}");
    assert_eq!(
        steps_on_disk(&dir),
        [1, 2, 3],
        "nothing may move on failure"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Before: a checkpoint write killed midway left `checkpoints/.tmp-step-N-<pid>` forever.
#[cfg(target_os = "linux")]
#[test]
fn temp_dirs_of_killed_checkpoint_writes_are_removed() {
    let dir = trained("hostile-tmp", 2, 1000);
    let ckpts = dir.join(CHECKPOINTS_DIR);
    // A process id above Linux's pid_max (2^22): that process cannot be running.
    let stale = ckpts.join(".tmp-step-00000003-99999999");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.bin"), b"half a record").unwrap();
    // A pid that is running now (init): reused since the write was killed. The run
    // directory's lock says no other trainer writes here, so this one is stale too.
    let reused = ckpts.join(".tmp-step-00000002-1");
    std::fs::create_dir_all(&reused).unwrap();
    // A killed atomic write of train_config.json.
    let half_config = dir.join(".train_config.json.tmp-99999999-0");
    std::fs::write(&half_config, b"{\"ste").unwrap();
    // This process is running: a write of its own is left alone.
    let live = ckpts.join(format!(".tmp-step-00000004-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();

    let t = Trainer::<B>::resume(&dir, dataset(), Some(3), &Default::default()).unwrap();
    assert_eq!(
        t.removed_temp_dirs(),
        [half_config.clone(), reused.clone(), stale.clone()]
    );
    assert!(!stale.exists() && !reused.exists() && !half_config.exists());
    assert!(live.exists());
    drop(t);
    std::fs::remove_dir_all(&live).unwrap();

    // A new run in a directory with leftovers removes them too.
    let fresh = tmp_dir("hostile-tmp-new");
    let stale = fresh
        .join(CHECKPOINTS_DIR)
        .join(".tmp-step-00000001-99999999");
    std::fs::create_dir_all(&stale).unwrap();
    let t = Trainer::<B>::new(config(1), &fresh, dataset(), &Default::default()).unwrap();
    assert_eq!(t.removed_temp_dirs(), std::slice::from_ref(&stale));
    assert!(!stale.exists());
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(fresh);
}

/// Before (issue #14 item 3): two trainers on one run directory both ran; `metrics.jsonl`
/// interleaved both runs and each overwrote the other's checkpoints. Now the second is refused
/// naming the lock, both for a new run and for a resume, and the directory is free again once
/// the first trainer is dropped (or its process dies: the lock is the OS's).
#[test]
fn a_second_trainer_on_a_locked_run_directory_is_refused() {
    let dir = tmp_dir("hostile-lock");
    let first = Trainer::<B>::new(config(2), &dir, dataset(), &Default::default()).unwrap();
    let held = |r: Result<Trainer<B>, TrainError>| match r {
        Err(TrainError::Lock(ddpm_io::LockError::Held { dir: d, lock_file })) => {
            assert_eq!(d, dir);
            assert!(lock_file.ends_with(".lock"), "{}", lock_file.display());
        }
        Err(e) => panic!("expected the lock error, got: {e}"),
        Ok(_) => panic!("a second trainer ran on a locked run directory"),
    };
    held(Trainer::<B>::new(
        config(2),
        &dir,
        dataset(),
        &Default::default(),
    ));
    let mut first = first;
    first.train_step().unwrap();
    first.save_checkpoint().unwrap();
    held(Trainer::<B>::resume(
        &dir,
        dataset(),
        None,
        &Default::default(),
    ));
    let message = Trainer::<B>::resume(&dir, dataset(), None, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("in use by another process"), "{message}");
    drop(first);
    let resumed = Trainer::<B>::resume(&dir, dataset(), None, &Default::default()).unwrap();
    assert_eq!(resumed.step(), 1);
    drop(resumed);
    let _ = std::fs::remove_dir_all(dir);
}
