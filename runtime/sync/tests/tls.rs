//! TLS on a real nats-server that verifies its clients (certificates made here with
//! `openssl`): a client with the authority and its own certificate does its part; one that
//! does not know the authority, or has no certificate, is refused at once, not retried.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use retroformer_sync::{FleetTrainer, Security};

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An authority, and a certificate it signed for `name` with `extensions`.
fn certificates(dir: &Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=fleet-test-ca",
            ],
        ]
        .concat(),
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (k, csr, pem) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            dir,
            &[
                &["req"],
                &key[..],
                &["-keyout", &k, "-out", &csr, "-subj", &format!("/CN={name}")],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

fn security(dir: &Path, ca: bool, client: bool) -> Security {
    let p = |f: &str| -> PathBuf { dir.join(f) };
    Security {
        creds: None,
        tls_ca: ca.then(|| p("ca.pem")),
        tls_client: client.then(|| (p("client.pem"), p("client-key.pem"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_authority_and_its_certificate_connects_and_others_are_refused_at_once() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let certs = root.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let tls = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
        certs.join("server.pem"),
        certs.join("server-key.pem"),
        certs.join("ca.pem")
    );
    let nats = Nats::with_config(&root.join("nats"), &tls);
    let url = format!("tls://127.0.0.1:{}", nats.port);

    let client = retroformer_sync::connect(&url, &security(&certs, true, true))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", nats.log()));
    let trainer = FleetTrainer::new(client, one_vote_config(root, 1000))
        .await
        .unwrap();
    let device_client =
        retroformer_sync::connect_device(&url, &security(&certs, true, true), "dev-a")
            .await
            .unwrap();
    let d = device(root, "dev-a", device_client);
    records(root, "dev-a", "run-1.jsonl", 5);
    assert!(d.upload().await.unwrap() > 0);
    let got = trainer
        .consume(100, Duration::from_millis(300), true)
        .await
        .unwrap();
    assert!(got.stored > 0);

    for (ca, client, why) in [
        (false, true, "an unknown authority"),
        (true, false, "no client certificate"),
    ] {
        let start = std::time::Instant::now();
        let refused = retroformer_sync::connect(&url, &security(&certs, ca, client)).await;
        assert!(refused.is_err(), "{why}: connected");
        assert!(start.elapsed() < Duration::from_secs(10), "{why}: retried");
    }
    let missing = Security {
        tls_ca: Some(certs.join("no-such-ca.pem")),
        ..Security::default()
    };
    let e = retroformer_sync::connect(&url, &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-ca.pem"), "{e}");
}
