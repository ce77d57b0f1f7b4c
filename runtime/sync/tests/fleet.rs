//! The fleet against a real `nats-server -js` on loopback (`bash .ci/setup` installs Debian's):
//! simulated devices (tiny adapters on a tiny base, scripted canary scores) upload records,
//! a trainer stores and trains, devices install; with the server killed and restarted, a
//! segment sent twice, a trainer that crashes between storing and acknowledging, a device
//! offline until a release was promoted, and a corrupted object.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use retroformer::adapters::AdapterStore;
use retroformer_sync::trainer::{BadLine, TrainFailure, Trained};
use retroformer_sync::{
    names, Device, FleetTrainer, ReleaseStatus, SyncError, TrainerConfig, WhenFull,
};

// long: one fleet's story, each stage starting from the state the last one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_and_every_device_converges_to_the_newest_good_adapter() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut nats = Nats::start(&root.join("nats"));
    let ids = ["dev-a", "dev-b", "dev-c"];
    let trainer_cfg = || TrainerConfig {
        dir: root.join("trainer"),
        base_sha256: base_sha(),
        min_new_records: 30,
        promote_after: 2,
        rollback_after: 1,
        ack_wait: Duration::from_secs(1),
        max_stored_bytes: None,
        when_full: retroformer_sync::WhenFull::Wait,
    };
    let trainer = FleetTrainer::new(connect(&nats.url()).await, trainer_cfg())
        .await
        .unwrap();
    let devices: Vec<Device> = {
        let mut v = Vec::new();
        for id in ids {
            v.push(device(root, id, connect(&nats.url()).await));
        }
        v
    };
    for id in ids {
        records(root, id, "run-1.jsonl", 20);
    }
    for d in &devices[..2] {
        assert!(d.upload().await.unwrap() >= 4, "several segments each");
    }

    // The server dies and comes back (its store kept): what was not acknowledged waits in
    // the outbox and goes when it is back.
    records(root, "dev-a", "run-2.jsonl", 10);
    nats = nats.restart();
    let mut sent = 0;
    for _ in 0..100 {
        match devices[0].upload().await {
            Ok(n) => {
                sent += n;
                if devices[0].outbox().pending().unwrap().is_empty() {
                    break;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(sent > 0 && devices[0].outbox().pending().unwrap().is_empty());

    // The same segment twice: another file with the same records.
    let a = root.join("dev-a").join("runs");
    std::fs::copy(a.join("run-2.jsonl"), a.join("run-2-copy.jsonl")).unwrap();
    assert!(devices[0].upload().await.unwrap() > 0, "re-sent");

    // A trainer that stores and crashes before acknowledging; the next one gets the
    // segments again after ack_wait and stores none twice.
    let crashed = trainer
        .consume(1000, Duration::from_millis(500), false)
        .await
        .unwrap();
    assert!(
        crashed.stored > 0 && crashed.stored == crashed.received,
        "{crashed:?}"
    );
    drop(trainer);
    let trainer = FleetTrainer::new(connect(&nats.url()).await, trainer_cfg())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut received, mut stored) = (0, 0);
    for _ in 0..5 {
        let got = trainer
            .consume(1000, Duration::from_millis(500), true)
            .await
            .unwrap();
        received += got.received;
        stored += got.stored;
    }
    assert!(received >= crashed.received, "re-delivered: {received}");
    assert_eq!(stored, 0, "every re-delivered segment was already stored");

    // The third device uploads late; then every record is stored exactly once.
    devices[2].upload().await.unwrap();
    for _ in 0..3 {
        trainer
            .consume(1000, Duration::from_millis(300), true)
            .await
            .unwrap();
    }
    let stored = lines_in(&trainer.stored().unwrap());
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(stored.len(), unique.len(), "no record stored twice");
    assert_eq!(stored.len(), 20 * 3 + 10, "every record stored");

    // Training: an adapter that says which data it saw; devices a and b run the canary.
    let mut train = fake_train(root, 1.0);
    let v1 = trainer
        .maybe_train(&mut train)
        .await
        .unwrap()
        .expect("enough new records");
    assert!(
        trainer.maybe_train(&mut train).await.unwrap().is_none(),
        "nothing new"
    );
    for d in &devices[..2] {
        let o = d
            .follow_release(&mut eval(&[&v1.sha256]))
            .await
            .unwrap()
            .expect("a canary ran");
        assert!(o.installed && o.promoted, "{o:?}");
    }
    let judged = trainer
        .judge(Duration::from_millis(500))
        .await
        .unwrap()
        .expect("judged");
    assert_eq!(judged.status, ReleaseStatus::Promoted);
    // The device that was away gets the promoted release without a canary of its own.
    for d in &devices {
        assert!(d.follow_release(&mut eval(&[])).await.unwrap().is_none());
    }
    let active = |id: &str| {
        AdapterStore::open(&root.join(id).join("store"), &base_sha())
            .unwrap()
            .active()
            .unwrap()
            .map(|m| m.sha256)
    };
    for id in ids {
        assert_eq!(active(id).as_deref(), Some(v1.sha256.as_str()), "{id}");
    }

    // A corrupted object: devices refuse it by its digest; the trainer rolls it back; every
    // device stays on the good one.
    records(root, "dev-b", "run-3.jsonl", 40);
    devices[1].upload().await.unwrap();
    trainer
        .consume(1000, Duration::from_millis(300), true)
        .await
        .unwrap();
    let v2 = trainer.maybe_train(&mut train).await.unwrap().unwrap();
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    let os = js.get_object_store(names::ADAPTERS_BUCKET).await.unwrap();
    os.put(v2.object.as_str(), &mut &b"not the adapter"[..])
        .await
        .unwrap();
    let o = devices[0]
        .follow_release(&mut eval(&[&v2.sha256]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !o.installed && o.reason.as_deref().unwrap().contains("sha256"),
        "{o:?}"
    );
    let judged = trainer
        .judge(Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(judged.status, ReleaseStatus::RolledBack);
    for d in &devices {
        d.follow_release(&mut eval(&[&v1.sha256])).await.unwrap();
    }
    for id in ids {
        assert_eq!(active(id).as_deref(), Some(v1.sha256.as_str()), "{id}");
    }

    // A worse adapter: the canary keeps the incumbent; rolled back fleet-wide.
    records(root, "dev-c", "run-4.jsonl", 40);
    devices[2].upload().await.unwrap();
    trainer
        .consume(1000, Duration::from_millis(300), true)
        .await
        .unwrap();
    let v3 = trainer.maybe_train(&mut train).await.unwrap().unwrap();
    assert_eq!(v3.version, 3);
    let o = devices[2]
        .follow_release(&mut eval(&[&v1.sha256]))
        .await
        .unwrap()
        .unwrap();
    assert!(o.installed && !o.promoted, "{o:?}");
    assert_eq!(
        trainer
            .judge(Duration::from_millis(500))
            .await
            .unwrap()
            .unwrap()
            .status,
        ReleaseStatus::RolledBack
    );
    for d in &devices {
        d.follow_release(&mut eval(&[&v1.sha256])).await.unwrap();
    }
    for id in ids {
        assert_eq!(active(id).as_deref(), Some(v1.sha256.as_str()), "{id}");
    }
}

// A bad record, a release whose object is missing, and votes left from the last release:
// each is contained where it arises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_segment_is_set_aside_a_failed_download_is_retried_and_old_votes_do_not_count() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = Nats::start(&root.join("nats"));
    let trainer = one_vote_trainer(root, &nats, 1)
        .await
        .with_line_check(Box::new(|l: &str| match l.contains("\"bad\"") {
            true => Err("a bad record".into()),
            false => Ok(()),
        }));
    let (a, b) = (
        device(root, "dev-a", connect(&nats.url()).await),
        device(root, "dev-b", connect(&nats.url()).await),
    );
    records(root, "dev-a", "good.jsonl", 2);
    let runs = root.join("dev-a").join("runs");
    std::fs::write(runs.join("worse.jsonl"), "{\"i\":1}\n{\"bad\":true}\n").unwrap();
    a.upload().await.unwrap();
    let got = trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    assert_eq!((got.stored, got.quarantined), (1, 1), "{got:?}");
    assert_eq!(
        lines_in(&trainer.stored().unwrap()).len(),
        2,
        "the good file only"
    );
    assert_eq!(
        std::fs::read_dir(root.join("trainer/quarantine"))
            .unwrap()
            .count(),
        1
    );

    // The release's object is missing: the device reports nothing and follows nothing, and
    // installs the release once the object is there.
    let dir = root.join("adapters");
    std::fs::create_dir_all(&dir).unwrap();
    let v1_file = adapter(&dir, 2.0, &"d".repeat(64));
    let v1 = trainer.publish(&v1_file, &"d".repeat(64)).await.unwrap();
    let js = async_nats::jetstream::new(connect(&nats.url()).await);
    let os = js.get_object_store(names::ADAPTERS_BUCKET).await.unwrap();
    os.delete(v1.object.as_str()).await.unwrap();
    assert!(a.follow_release(&mut eval(&[&v1.sha256])).await.is_err());
    assert!(
        trainer
            .judge(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "no vote"
    );
    let bytes = std::fs::read(&v1_file).unwrap();
    os.put(v1.object.as_str(), &mut bytes.as_slice())
        .await
        .unwrap();
    promote(&a, &trainer, &v1).await;

    // A release published alone (no training clears the trainer's state): the last
    // release's vote is not this one's; it needs a vote of its own.
    let v2_file = adapter(&dir, 3.0, &"e".repeat(64));
    let v2 = trainer.publish(&v2_file, &"e".repeat(64)).await.unwrap();
    let stale = trainer.judge(Duration::from_millis(300)).await.unwrap();
    assert!(stale.is_none(), "judged on v1's vote: {stale:?}");
    promote(&b, &trainer, &v2).await;

    // A promoted release whose object a device refuses (here: replaced after the vote) is
    // refused once; the device keeps its adapter and does not download it again at every
    // check.
    let v3_file = adapter(&dir, 4.0, &"f".repeat(64));
    let v3 = trainer.publish(&v3_file, &"f".repeat(64)).await.unwrap();
    promote(&b, &trainer, &v3).await;
    os.put(v3.object.as_str(), &mut b"not the adapter".as_slice())
        .await
        .unwrap();
    let refused = a.follow_release(&mut eval(&[&v3.sha256])).await;
    assert!(refused.is_err(), "{refused:?}");
    let again = a.follow_release(&mut eval(&[&v3.sha256])).await;
    assert!(matches!(again, Ok(None)), "{again:?}");
    let active = AdapterStore::open(&root.join("dev-a").join("store"), &base_sha())
        .unwrap()
        .active()
        .unwrap()
        .map(|m| m.sha256);
    assert_eq!(active.as_deref(), Some(v1.sha256.as_str()));
}

// Lines that pass the line check but that only the model refuses: the training names them all,
// their segments are set aside together, and the rest trains at once (no wait for new records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_the_training_cannot_read_are_set_aside_and_the_rest_trained_at_once() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = Nats::start(&root.join("nats"));
    let trainer = one_vote_trainer(root, &nats, 3).await;
    let a = device(root, "dev-a", connect(&nats.url()).await);
    records(root, "dev-a", "good.jsonl", 4);
    let runs = root.join("dev-a").join("runs");
    for (name, odd) in [("odd.jsonl", 1), ("odd2.jsonl", 2)] {
        let text = format!("{{\"i\":{odd}}}\n{{\"unknown_to_the_model\":{odd}}}\n");
        std::fs::write(runs.join(name), text).unwrap();
    }
    a.upload().await.unwrap();
    let got = trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    // Every segment passes the line check (the device cuts small segments: good.jsonl is two).
    assert_eq!((got.stored, got.quarantined), (got.received, 0), "{got:?}");
    let dir = root.join("adapters");
    std::fs::create_dir_all(&dir).unwrap();
    let mut calls = 0;
    let mut train = |files: &[PathBuf]| -> Result<Trained, TrainFailure> {
        calls += 1;
        let mut bad = Vec::new();
        for (file, p) in files.iter().enumerate() {
            let text = std::fs::read_to_string(p).unwrap();
            for (i, l) in text.lines().enumerate() {
                if l.contains("unknown_to_the_model") {
                    let reason = "refused by the model".to_string();
                    bad.push(BadLine {
                        file,
                        line: i + 1,
                        reason,
                    });
                }
            }
        }
        if !bad.is_empty() {
            return Err(TrainFailure::BadLines(bad));
        }
        let data = retroformer_sync::sha256_hex(lines_in(files).join("\n").as_bytes());
        Ok(Trained {
            path: adapter(&dir, 2.0, &data),
            data_sha256: data,
        })
    };
    let v1 = trainer.maybe_train(&mut train).await.unwrap();
    assert!(v1.is_some(), "the rest trained");
    assert_eq!(
        lines_in(&trainer.stored().unwrap()).len(),
        4,
        "the good file only"
    );
    let set_aside: Vec<String> = std::fs::read_dir(root.join("trainer/quarantine"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(set_aside.len(), 2);
    assert!(set_aside.iter().all(|s| s.contains("unknown_to_the_model")));

    assert!(
        trainer.maybe_train(&mut train).await.unwrap().is_none(),
        "nothing new"
    );
    assert_eq!(
        calls, 2,
        "one training refused (both named), one on the rest, then none"
    );

    // A fault in every record file given is the model's or the trainer's, not the data's:
    // none is set aside, and the training fails until new records arrive.
    records(root, "dev-a", "more.jsonl", 4);
    a.upload().await.unwrap();
    trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    let mut broken = |files: &[PathBuf]| -> Result<Trained, TrainFailure> {
        let reason = "the tokenizer is gone".to_string();
        let each = |file| BadLine {
            file,
            line: 1,
            reason: reason.clone(),
        };
        Err(TrainFailure::BadLines((0..files.len()).map(each).collect()))
    };
    let e = trainer.maybe_train(&mut broken).await.unwrap_err();
    assert!(
        matches!(&e, SyncError::Train(why) if why.contains("none is set aside")),
        "{e}"
    );
    let quarantine = std::fs::read_dir(root.join("trainer/quarantine")).unwrap();
    assert_eq!(quarantine.count(), 2, "the two set aside before, no more");
}

/// The trainer of [`one_vote_config`].
async fn one_vote_trainer(root: &std::path::Path, nats: &Nats, min_new: usize) -> FleetTrainer {
    FleetTrainer::new(connect(&nats.url()).await, one_vote_config(root, min_new))
        .await
        .unwrap()
}

/// `device` installs `r` and its canary passes; the trainer, with that one vote, promotes it.
async fn promote(device: &Device, trainer: &FleetTrainer, r: &retroformer_sync::Release) {
    let o = device
        .follow_release(&mut eval(&[&r.sha256]))
        .await
        .unwrap()
        .unwrap();
    assert!(o.installed && o.promoted, "{o:?}");
    let judged = trainer
        .judge(Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (judged.version, judged.status),
        (r.version, ReleaseStatus::Promoted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_takes_no_segment_and_they_wait_in_the_stream_until_there_is_room() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = Nats::start(&root.join("nats"));
    let cfg = |cap| TrainerConfig {
        max_stored_bytes: cap,
        ..one_vote_config(root, 1000)
    };
    // One byte: the first batch fits (the store is empty), nothing after it does.
    let trainer = FleetTrainer::new(connect(&nats.url()).await, cfg(Some(1)))
        .await
        .unwrap();
    let a = device(root, "dev-a", connect(&nats.url()).await);
    records(root, "dev-a", "run-1.jsonl", 4);
    a.upload().await.unwrap();
    let first = trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    assert!(first.stored > 0 && !first.full, "{first:?}");
    let kept = trainer.stored().unwrap().len();
    assert!(trainer.stored_bytes().unwrap() > 1);

    records(root, "dev-a", "run-2.jsonl", 4);
    assert!(a.upload().await.unwrap() > 0);
    let full = trainer
        .consume(1000, Duration::from_millis(300), true)
        .await
        .unwrap();
    assert!(full.full && full.received == 0, "{full:?}");
    assert_eq!(trainer.stored().unwrap().len(), kept);

    // Room again (no bound): the segments that waited are taken.
    drop(trainer);
    let trainer = FleetTrainer::new(connect(&nats.url()).await, cfg(None))
        .await
        .unwrap();
    let mut stored = 0;
    for _ in 0..3 {
        let got = trainer
            .consume(1000, Duration::from_millis(300), true)
            .await
            .unwrap();
        assert!(!got.full);
        stored += got.stored;
    }
    assert!(stored > 0, "the waiting segments");
    assert_eq!(trainer.stored().unwrap().len(), kept + stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_that_drops_trained_segments_removes_the_oldest_first_and_never_untrained_ones(
) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = Nats::start(&root.join("nats"));
    let cfg = |cap| TrainerConfig {
        max_stored_bytes: cap,
        when_full: WhenFull::DropTrained,
        ..one_vote_config(root, 1)
    };
    let mut train = fake_train(root, 0.0);
    let bytes = |ps: &[PathBuf]| ps.iter().map(|p| p.metadata().unwrap().len()).sum::<u64>();
    let a = device(root, "dev-a", connect(&nats.url()).await);

    // Two trainings, A then B, stored without a bound and never acknowledged: the server
    // delivers them again later.
    let trainer = FleetTrainer::new(connect(&nats.url()).await, cfg(None))
        .await
        .unwrap();
    let mut batches: Vec<Vec<PathBuf>> = Vec::new();
    for (name, n) in [("run-a.jsonl", 4), ("run-b.jsonl", 4)] {
        records(root, "dev-a", name, n);
        assert!(a.upload().await.unwrap() > 0);
        let before = trainer.stored().unwrap();
        trainer
            .consume(1000, Duration::from_millis(300), false)
            .await
            .unwrap();
        let now = trainer.stored().unwrap();
        batches.push(now.into_iter().filter(|p| !before.contains(p)).collect());
        trainer.maybe_train(&mut train).await.unwrap().unwrap();
    }
    let (old, newer) = (&batches[0], &batches[1]);
    assert!(!old.is_empty() && !newer.is_empty());
    drop(trainer);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // A bound that removing A alone meets; C, larger than B, comes in.
    let cap = bytes(newer) + 1;
    let trainer = FleetTrainer::new(connect(&nats.url()).await, cfg(Some(cap)))
        .await
        .unwrap();
    records(root, "dev-a", "run-c.jsonl", 12);
    assert!(a.upload().await.unwrap() > 0);
    let got = consume_until_stored(&trainer).await;
    assert_eq!(got.dropped, old.len(), "A, the oldest, went: {got:?}");
    assert!(old.iter().all(|p| !p.exists()), "and was not stored again");
    assert!(newer.iter().all(|p| p.exists()), "B stays: {got:?}");
    assert!(
        got.received > got.stored,
        "A and B delivered again: {got:?}"
    );
    let (_, untrained) = trainer.untrained().unwrap();
    assert_eq!(untrained.len(), got.stored, "C alone is untrained");
    assert!(bytes(&untrained) >= cap, "C alone fills the store");

    // C is untrained and fills the store alone: removing B would not help, so it stays.
    records(root, "dev-a", "run-d.jsonl", 2);
    assert!(a.upload().await.unwrap() > 0);
    let waiting = trainer
        .consume(1000, Duration::from_millis(300), true)
        .await
        .unwrap();
    assert!(
        waiting.full && waiting.dropped == 0 && waiting.received == 0,
        "{waiting:?}"
    );
    assert!(newer.iter().all(|p| p.exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_full_of_set_aside_segments_removes_the_oldest_to_take_new_ones_but_never_untrained_ones(
) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = Nats::start(&root.join("nats"));
    let trainer = FleetTrainer::new(
        connect(&nats.url()).await,
        TrainerConfig {
            max_stored_bytes: Some(1),
            when_full: WhenFull::DropTrained,
            ..one_vote_config(root, 1000)
        },
    )
    .await
    .unwrap()
    .with_line_check(Box::new(|l: &str| match l.contains("\"bad\"") {
        true => Err("a bad record".into()),
        false => Ok(()),
    }));
    let consume = || trainer.consume(1000, Duration::from_millis(300), true);
    let a = device(root, "dev-a", connect(&nats.url()).await);
    let runs = root.join("dev-a").join("runs");
    std::fs::write(runs.join("bad.jsonl"), "{\"bad\":true}\n").unwrap();
    a.upload().await.unwrap();
    let first = consume().await.unwrap();
    assert_eq!((first.quarantined, first.stored), (1, 0), "{first:?}");

    records(root, "dev-a", "good.jsonl", 2);
    assert!(a.upload().await.unwrap() > 0);
    let got = consume_until_stored(&trainer).await;
    assert_eq!(
        (got.dropped_set_aside, got.dropped),
        (1, 0),
        "the set-aside segment went: {got:?}"
    );
    assert!(got.stored > 0, "{got:?}");
    assert_eq!(
        std::fs::read_dir(root.join("trainer/quarantine"))
            .unwrap()
            .count(),
        0
    );

    // Now only untrained segments fill it: they stay, and the next ones wait.
    let kept = trainer.stored().unwrap();
    records(root, "dev-a", "more.jsonl", 2);
    assert!(a.upload().await.unwrap() > 0);
    let waiting = consume().await.unwrap();
    assert!(
        waiting.full && waiting.received == 0 && waiting.dropped + waiting.dropped_set_aside == 0,
        "{waiting:?}"
    );
    assert_eq!(trainer.stored().unwrap(), kept);
}
