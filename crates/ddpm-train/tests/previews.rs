//! Previews and checkpoints of a run: every checkpoint carries the run's
//! `scheduler_config.json`; a preview that cannot be written stops the run with an error
//! naming the file (never a silent 0-byte image), after the step's checkpoint is safe.

mod common;

use common::{B, config, dataset, tmp_dir};
use ddpm_pipeline::layout::{SCHEDULER_CONFIG_FILE, checkpoint_dir, preview_path};
use ddpm_train::Trainer;

#[test]
fn checkpoints_carry_the_schedule_and_a_failed_preview_stops_the_run() {
    let device = Default::default();
    let run = tmp_dir("previews");
    let mut t = Trainer::<B>::new(config(1), &run, dataset(), &device).unwrap();
    // `samples.png` cannot be replaced by a file: the newest preview cannot be written.
    std::fs::create_dir_all(run.join("samples.png")).unwrap();
    let err = t.run(|_| {}).unwrap_err().to_string();
    assert!(err.contains("samples.png"), "{err}");
    // The step's checkpoint was written first, with the run's scheduler config.
    let ckpt = checkpoint_dir(&run, 1);
    assert_eq!(
        std::fs::read(ckpt.join(SCHEDULER_CONFIG_FILE)).unwrap(),
        std::fs::read(run.join(SCHEDULER_CONFIG_FILE)).unwrap()
    );
    // The per-step preview is a complete PNG.
    let png = std::fs::read(preview_path(&run, 1)).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let _ = std::fs::remove_dir_all(run);
}
