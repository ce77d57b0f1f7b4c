//! A device's NATS user under `names::device_permissions`, on a real nats-server with
//! per-user permissions: enough for the device's whole part (upload, read the release,
//! download the adapter, report its canary), and nothing beyond it (another device's
//! subject, a release, an object, the streams themselves).

mod common;

use std::time::Duration;

use common::*;
use retroformer_sync::{names, FleetTrainer, ReleaseStatus};

/// A JetStream context that gives up on an unanswered request soon (a refused publish is
/// dropped by the server, so its acknowledgement never comes).
fn impatient(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(700))
        .build(client)
}

/// A client of dev-a's user.
async fn dev_a(url: &str) -> async_nats::Client {
    retroformer_sync::connect_device(url, &Default::default(), "dev-a")
        .await
        .unwrap()
}

// long: one device's allowed part, then each forbidden act in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_does_its_whole_part_but_cannot_speak_for_another_or_write_a_release() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let perms = names::device_permissions("dev-a").server_config();
    let nats = Nats::with_users(
        &root.join("nats"),
        &[
            r#"{ user: "trainer", password: "t-secret" }"#.to_string(),
            format!(r#"{{ user: "dev-a", password: "a-secret", permissions: {perms} }}"#),
        ],
    );
    let as_trainer = nats.url_as("trainer", "t-secret");
    let as_a = nats.url_as("dev-a", "a-secret");
    let trainer = FleetTrainer::new(connect(&as_trainer).await, one_vote_config(root, 5))
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", nats.log()));

    // A wrong password is an error now, not a connection retried for ever; the message does
    // not repeat the password.
    let refused = retroformer_sync::connect(&nats.url_as("dev-a", "not-it"), &Default::default())
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains("authorization") && !refused.contains("not-it"),
        "{refused}"
    );

    // Its whole part: upload, then a release downloaded, checked, put through the canary,
    // reported and promoted.
    let a = device(root, "dev-a", dev_a(&as_a).await);
    records(root, "dev-a", "run-1.jsonl", 10);
    assert!(a.upload().await.unwrap() > 0);
    let got = trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    assert!(got.stored > 0, "{got:?}");
    let mut train = fake_train(root, 1.0);
    let v1 = trainer.maybe_train(&mut train).await.unwrap().unwrap();
    let o = a
        .follow_release(&mut eval(&[&v1.sha256]))
        .await
        .unwrap()
        .expect("the device read the release and ran its canary");
    assert!(
        o.installed && o.promoted,
        "{o:?}; server log:\n{}",
        nats.log()
    );
    let judged = trainer.judge(Duration::from_millis(500)).await.unwrap();
    assert_eq!(judged.map(|r| r.status), Some(ReleaseStatus::Promoted));

    // Speaking for another device with dev-a's user: refused by the server.
    let fake = device(root, "dev-b", dev_a(&as_a).await);
    records(root, "dev-b", "run-1.jsonl", 10);
    assert!(fake.upload().await.is_err(), "dev-a published as dev-b");
    assert!(
        !fake.outbox().pending().unwrap().is_empty(),
        "kept for later"
    );

    // Writing a release, an object, or removing a stream: refused.
    let js = impatient(dev_a(&as_a).await);
    let key = format!(
        "$KV.{}.{}",
        names::RELEASES_BUCKET,
        names::release_key(&base_sha())
    );
    let forged = js.publish(key, "{}".into()).await.unwrap().await;
    assert!(forged.is_err(), "dev-a wrote a release: {forged:?}");
    let os = js.get_object_store(names::ADAPTERS_BUCKET).await.unwrap();
    let put = os.put("forged.gguf", &mut &b"not an adapter"[..]).await;
    assert!(put.is_err(), "dev-a wrote an object");
    assert!(js.delete_stream(names::RECORDS_STREAM).await.is_err());
    // Listening to the other devices' replies: refused too.
    let snoop = dev_a(&as_a).await;
    let _ = snoop.subscribe("_INBOX.>").await;
    snoop.flush().await.unwrap();

    // The trainer saw dev-a's records only, and the release is untouched.
    trainer
        .consume(1000, Duration::from_millis(500), true)
        .await
        .unwrap();
    let lines = lines_in(&trainer.stored().unwrap());
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l.contains("\"device\":\"dev-a\"")));
    let release = a.release().await.unwrap().unwrap();
    assert_eq!(
        (release.version, release.status),
        (1, ReleaseStatus::Promoted)
    );
    // The server refused exactly those, and nothing of the device's own part.
    let log = nats.log();
    let snooped = log.matches("Subscription Violation").count();
    assert_eq!(snooped, 1, "{log}");
    let mut refused: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.split("Publish Violation - User \"dev-a\", Subject ")
                .nth(1)
        })
        .collect();
    // (every pending segment of the false dev-b is refused in turn)
    refused.dedup();
    assert_eq!(refused.len(), 4, "{log}");
    assert_eq!(refused[0], format!("{:?}", names::records_subject("dev-b")));
    assert!(refused[1].starts_with(&format!("\"$KV.{}.", names::RELEASES_BUCKET)));
    assert!(refused[2].starts_with(&format!("\"$O.{}.", names::ADAPTERS_BUCKET)));
    assert!(refused[3].contains("STREAM.DELETE"));
}
