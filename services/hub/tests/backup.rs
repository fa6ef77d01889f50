//! Online backup and restore of the hub: submissions into a serving hub, a
//! backup through its control socket (the path `lacnet-hub backup` takes),
//! more submissions, then a restore into an empty directory and a hub served
//! from it, which reports exactly what the network had at the backup and
//! keeps appending to the audit log without overwriting it.

use std::path::PathBuf;

use lacnet_proto::hub::v1 as hub;
use lacnet_server::backups::Taken;
use lacnet_store::backup::BackupError;
use lacnet_store::control::Control;
use lacnet_testkit::hub::*;
use tokio_util::sync::CancellationToken;

async fn report(h: &TestHub, pki: &Pki) -> hub::MetricComparison {
    h.reports(&pki.analyst)
        .await
        .compare_metric(compare_request("people_active", "2025-Q1", "2025-Q2"))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_restores_the_network_at_the_backup() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = TestHub::start(&pki, &data, |_| {}).await;
    let socket = lacnet_server::backups::default_socket(&data);
    let control = Control::bind(&socket).await.unwrap();
    let stop_control = CancellationToken::new();
    let control_task = tokio::spawn(control.serve(
        lacnet_hub::backup::control_fn(h.hub.clone()),
        stop_control.clone().cancelled_owned(),
    ));

    for (pem, site, active) in [(&pki.thurrock, THURROCK, 400), (&pki.derby, DERBY, 250)] {
        let r = h
            .submit(
                pem,
                submission(site, "2025-Q1", 1, &aggregates(active, 100, 20, 15)),
            )
            .await
            .unwrap();
        assert_eq!(r.status, hub::ReceiptStatus::New as i32);
    }
    let before = report(&h, &pki).await;
    let audit_before = h.hub.audit_log().unwrap();

    let b1: PathBuf = dir.path().join("backups/b1");
    let (taken, summary) =
        lacnet_server::backups::backup(&socket, &b1, lacnet_hub::backup::offline(&data, 8 << 20))
            .await
            .unwrap();
    assert_eq!(taken, Taken::Online, "the running hub must take it");
    // Two trees (submissions, audit), and the pack file both releases' cells
    // were appended to.
    assert!(summary.contains("2 tree(s)"), "{summary}");
    assert!(summary.contains("1 file(s)"), "{summary}");

    // After the backup: a new revision and a new period. Not in the backup.
    h.submit(
        &pki.thurrock,
        submission(THURROCK, "2025-Q1", 2, &aggregates(500, 120, 20, 15)),
    )
    .await
    .unwrap();
    h.submit(
        &pki.swansea,
        submission(SWANSEA, "2025-Q2", 1, &aggregates(300, 90, 10, 10)),
    )
    .await
    .unwrap();
    let after = report(&h, &pki).await;
    assert_ne!(before, after, "later submissions must change the report");

    stop_control.cancel();
    control_task.await.unwrap();
    assert!(!socket.exists());
    drop(h.stop().await);

    // Restore into an empty directory and serve it.
    let restored = dir.path().join("restored");
    let r = lacnet_hub::backup::restore(&b1, &restored).unwrap();
    assert_eq!(
        (r.trees, r.files),
        (2, 1),
        "the trees and the pack of release cells"
    );
    let err = lacnet_hub::backup::restore(&b1, &restored).unwrap_err();
    assert!(matches!(err, BackupError::Destination { .. }), "{err}");
    let h = TestHub::start(&pki, &restored, |_| {}).await;
    assert_eq!(report(&h, &pki).await, before);
    assert_eq!(
        h.hub
            .revisions(THURROCK, lacnet_core::Period::parse("2025-Q1").unwrap())
            .unwrap(),
        vec![1]
    );

    // The audit log is the one at the backup, and new events append to it
    // (sled's id generator moved past the old ids, so nothing is overwritten).
    let audit = h.hub.audit_log().unwrap();
    assert!(audit.len() > audit_before.len());
    assert_eq!(audit[..audit_before.len()], audit_before[..]);
    let r = h
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2025-Q1", 2, &aggregates(500, 120, 20, 15)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, hub::ReceiptStatus::New as i32);
    let audit_now = h.hub.audit_log().unwrap();
    assert_eq!(audit_now[..audit.len()], audit[..]);
    assert_eq!(audit_now.last().map(|e| e.revision), Some(Some(2)));
    drop(h.stop().await);

    // Offline: with no hub running, the same command opens the directory itself.
    let b2 = dir.path().join("backups/b2");
    let (taken, _) = lacnet_server::backups::backup(
        &lacnet_server::backups::default_socket(&restored),
        &b2,
        lacnet_hub::backup::offline(&restored, 8 << 20),
    )
    .await
    .unwrap();
    assert_eq!(taken, Taken::Offline);
    let restored2 = dir.path().join("restored2");
    lacnet_hub::backup::restore(&b2, &restored2).unwrap();
    let h = TestHub::start(&pki, &restored2, |_| {}).await;
    assert_eq!(
        h.hub
            .revisions(THURROCK, lacnet_core::Period::parse("2025-Q1").unwrap())
            .unwrap(),
        vec![2],
        "the hub keeps only the current release"
    );
    drop(h.stop().await);
}
