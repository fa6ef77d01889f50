//! `Submissions.ListReleases`, the agents' anti-entropy question, against a
//! served hub over mTLS: a site sees only its own releases, in bounded pages
//! that together list each current release once, and the store id changes
//! exactly when the data directory is new or restored from a backup.

use std::collections::BTreeMap;

use lacnet_proto::convert::period_from_proto;
use lacnet_proto::hub::v1 as hub;
use lacnet_testkit::hub::*;
use tonic::Code;

fn list(site: &str, page_size: u32, page_token: &str) -> hub::ListReleasesRequest {
    hub::ListReleasesRequest {
        site_code: site.into(),
        page_size,
        page_token: page_token.into(),
    }
}

/// Every release the hub lists for Thurrock, page by page: (period, revision,
/// digest), the pages read, and the store id (the same on every page).
async fn all_pages(
    h: &TestHub,
    pki: &Pki,
    size: u32,
) -> (BTreeMap<String, (u64, String)>, usize, String) {
    let mut c = h.submissions(&pki.thurrock).await;
    let (mut all, mut pages, mut token, mut id) = (BTreeMap::new(), 0, String::new(), None);
    loop {
        let page = c
            .list_releases(list(THURROCK, size, &token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        let limit = if size == 0 { 200 } else { size as usize };
        assert!(page.releases.len() <= limit);
        assert_eq!(id.get_or_insert(page.store_id.clone()), &page.store_id);
        for r in page.releases {
            let p = period_from_proto(r.period.as_ref(), "period")
                .unwrap()
                .to_string();
            assert!(
                all.insert(p, (r.revision, r.digest)).is_none(),
                "listed twice"
            );
        }
        if page.next_page_token.is_empty() {
            return (all, pages, id.unwrap());
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_lists_only_its_own_releases_in_pages_and_the_store_id_marks_a_restore() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = TestHub::start(&pki, &data, |_| {}).await;
    let quarters = ["2024-Q2", "2024-Q3", "2024-Q4", "2025-Q1", "2025-Q2"];
    let mut digests = BTreeMap::new();
    for (i, q) in quarters.iter().enumerate() {
        let sub = submission(
            THURROCK,
            q,
            1,
            &aggregates(400 + 10 * i as u64, 100, 20, 15),
        );
        digests.insert(q.to_string(), (1, sub.digest.clone()));
        h.submit(&pki.thurrock, sub).await.unwrap();
    }
    // A newer revision replaces the first; Derby's release is not Thurrock's business.
    let newer = submission(THURROCK, "2024-Q2", 2, &aggregates(900, 100, 20, 15));
    digests.insert("2024-Q2".into(), (2, newer.digest.clone()));
    let receipt = h.submit(&pki.thurrock, newer).await.unwrap();
    assert_eq!(receipt.current_revision, 2);
    h.submit(
        &pki.derby,
        submission(DERBY, "2025-Q1", 1, &aggregates(250, 90, 10, 10)),
    )
    .await
    .unwrap();

    let (listed, pages, id) = all_pages(&h, &pki, 2).await;
    assert_eq!(listed, digests);
    assert_eq!(pages, 3, "five releases in pages of two");
    assert_eq!(receipt.store_id, id, "receipts name the same store");
    assert!(!id.is_empty());

    // Only the site itself may ask, and bad fields are named.
    let mut c = h.submissions(&pki.thurrock).await;
    let e = c.list_releases(list(DERBY, 0, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let mut a = h.submissions(&pki.analyst).await;
    let e = a.list_releases(list(THURROCK, 0, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    for (req, field) in [
        (list(THURROCK, 5000, ""), "page_size"),
        (list(THURROCK, 0, "not-a-token"), "page_token"),
        (list("", 0, ""), "site_code"),
    ] {
        let e = c.list_releases(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert_eq!(lacnet_proto::status::refused_fields(&e), vec![field], "{e}");
    }

    // A restart keeps the store id; a restore from a backup gets a new one.
    let backup = dir.path().join("backup");
    h.hub.backup(backup.clone()).await.unwrap();
    drop(h.stop().await);
    let h = TestHub::start(&pki, &data, |_| {}).await;
    assert_eq!(all_pages(&h, &pki, 0).await.2, id);
    drop(h.stop().await);
    let restored = dir.path().join("restored");
    lacnet_hub::backup::restore(&backup, &restored).unwrap();
    let h = TestHub::start(&pki, &restored, |_| {}).await;
    let (listed, pages, new_id) = all_pages(&h, &pki, 0).await;
    assert_eq!((listed, pages), (digests, 1));
    assert_ne!(new_id, id, "a restored store must say so");
    drop(h.stop().await);
}
