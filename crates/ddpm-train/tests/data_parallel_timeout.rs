//! A data-parallel peer that never arrives: the others stop after the group's timeout with an
//! error naming it, instead of waiting forever.
//!
//! NOTE: alone in its test binary on purpose: the timed-out registration stays blocked in Burn's
//! process-wide collective server until the process ends.
#![cfg(feature = "collective")]

mod common;

use std::time::Duration;

use burn::backend::Flex;
use common::{B, config, dataset, tmp_dir};
use ddpm_train::TrainError;
use ddpm_train::parallel::{
    Arrivals, BurnCollective, Collective, ParallelTraining, PeerGroup, Start,
};

#[test]
fn a_peer_that_never_arrives_stops_the_others_with_a_timeout_naming_it() {
    let dir = tmp_dir("dp-missing");
    let group = PeerGroup::local(2).with_timeout(Duration::from_secs(2));
    let arrivals = Arrivals::new(2);
    let run = ParallelTraining::<B>::new(
        Start::New(config(2).with_batch_size(12)),
        &dir,
        dataset(),
        vec![Default::default(); 2],
        group.clone(),
    )
    .unwrap();
    let err = run
        .run_with(
            |local, device| {
                if local == 1 {
                    // Peer 1 never registers (and gives up after the others did).
                    std::thread::sleep(Duration::from_secs(4));
                    return Err(TrainError::Collective {
                        peer: Some(1),
                        op: "register",
                        message: "test: never joined".into(),
                    });
                }
                let c = BurnCollective::<Flex>::register(&group, local, *device, &arrivals)?;
                Ok(Box::new(c) as Box<dyn Collective<Flex>>)
            },
            |_| {},
        )
        .err()
        .unwrap();
    match &err {
        TrainError::PeerTimeout {
            peer: 0,
            op: "register",
            missing,
            ..
        } => assert!(missing.contains("peer 1"), "{err}"),
        other => panic!("expected a timeout naming peer 1, got {other}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
