//! Checks of [`NightscoutStore`](crate::NightscoutStore).

use wardline_domain::nightscout::Collection;
use wardline_domain::{DeviceId, DeviceKind, PatientId};

use super::{at, audit, patient};
use crate::{
    DeviceStatus, InitialAssignment, NewDevice, NewNightscoutDocument, NewNightscoutSite,
    NightscoutDocumentQuery, Store, StoreError,
};

fn new_site(id: &str, patient_id: PatientId) -> NewNightscoutSite {
    NewNightscoutSite {
        id: id.into(),
        device: NewDevice {
            id: DeviceId::parse(&format!("ns-{id}")).expect("device id"),
            kind: DeviceKind::NightscoutUploader,
            model: "Nightscout uploader".into(),
            serial: id.into(),
            secret_hash: [3; 32],
            created: at(0),
        },
        assignment: InitialAssignment {
            patient_id,
            from: at(-60),
        },
        sha1_check: [1; 32],
        sha512_check: [5; 32],
    }
}

fn document(collection: Collection, id: &str, key: &str, minute: i64) -> NewNightscoutDocument {
    NewNightscoutDocument {
        collection,
        id: id.into(),
        fallback_id: format!("f{}", &id[1..]),
        key: key.into(),
        time_ms: at(minute).timestamp_millis(),
        kind: Some("sgv".into()),
        body: format!(r#"{{"_id": "{id}", "sgv": {minute}}}"#),
    }
}

/// Enables the Nightscout site `id` for `patient_id`.
async fn enable_site(store: &dyn Store, id: &str, patient_id: PatientId) {
    store
        .create_nightscout_site(new_site(id, patient_id), audit("nightscout.enable"))
        .await
        .expect("site");
}

/// A site is created with its device and assignment in one commit (or not at all), is
/// found by its name and its patient, and ends with its device.
pub async fn nightscout_sites_live_with_their_device(store: &dyn Store) {
    let ada = patient(store, "Ada").await;
    let site = store
        .create_nightscout_site(
            new_site("00aa11bb22cc33dd", ada),
            audit("nightscout.enable"),
        )
        .await
        .expect("create site");
    assert_eq!(site.patient_id, ada);
    assert_eq!(site.device_status, DeviceStatus::Active);
    assert_eq!(site.accepts_from, at(-60));
    assert_eq!((site.sha1_check, site.sha512_check), ([1; 32], [5; 32]));
    let device = store
        .device(&site.device_id)
        .await
        .expect("device")
        .expect("enrolled with the site");
    assert_eq!(device.kind, DeviceKind::NightscoutUploader);
    assert_eq!(
        store
            .nightscout_site("00aa11bb22cc33dd")
            .await
            .expect("site"),
        Some(site.clone())
    );
    assert_eq!(
        store
            .nightscout_site("ffffffffffffffff")
            .await
            .expect("site"),
        None
    );
    let ghost = PatientId::random();
    assert!(matches!(
        store
            .create_nightscout_site(
                new_site("99aa11bb22cc33dd", ghost),
                audit("nightscout.enable")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .device(&DeviceId::parse("ns-99aa11bb22cc33dd").expect("id"))
            .await
            .expect("device")
            .is_none(),
        "a refused site leaves no device"
    );
    store
        .set_device_status(
            &site.device_id,
            DeviceStatus::Revoked,
            audit("devices.revoke"),
        )
        .await
        .expect("revoke");
    let sites = store.nightscout_sites_of_patient(ada).await.expect("sites");
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].device_status, DeviceStatus::Revoked);
}

/// Documents are kept once per key and patient, answered in order with the one kept,
/// and read newest first by time, type and `_id`, page by page.
pub async fn nightscout_documents_are_kept_once_per_key(store: &dyn Store) {
    let ada = patient(store, "Ada").await;
    let bob = patient(store, "Bob").await;
    enable_site(store, "00aa11bb22cc33dd", ada).await;
    enable_site(store, "11aa11bb22cc33dd", bob).await;
    let first = vec![
        document(Collection::Entries, "a00000000000000000000001", "1|sgv", 1),
        document(Collection::Entries, "a00000000000000000000002", "2|sgv", 2),
    ];
    let kept = store
        .store_nightscout_documents("00aa11bb22cc33dd", first)
        .await
        .expect("store");
    assert!(kept.iter().all(|document| document.new));
    // A re-sent document, a new one whose client `_id` is taken, and a new one.
    let second = vec![
        document(Collection::Entries, "a00000000000000000000009", "2|sgv", 2),
        document(Collection::Entries, "a00000000000000000000001", "3|sgv", 3),
        document(Collection::Entries, "a00000000000000000000004", "4|sgv", 4),
    ];
    let kept = store
        .store_nightscout_documents("00aa11bb22cc33dd", second)
        .await
        .expect("store");
    assert_eq!(
        kept.iter()
            .map(|document| (document.id.as_str(), document.new))
            .collect::<Vec<_>>(),
        vec![
            ("a00000000000000000000002", false),
            ("f00000000000000000000001", true),
            ("a00000000000000000000004", true),
        ]
    );
    assert!(
        kept[1].body.contains("f00000000000000000000001"),
        "{}",
        kept[1].body
    );
    // The same key for another patient is another document.
    let other = store
        .store_nightscout_documents(
            "11aa11bb22cc33dd",
            vec![document(
                Collection::Entries,
                "a00000000000000000000002",
                "2|sgv",
                2,
            )],
        )
        .await
        .expect("store");
    assert!(other[0].new);
    assert_eq!(other[0].site, "11aa11bb22cc33dd");
    assert_eq!(
        kept[0].site, "00aa11bb22cc33dd",
        "a re-sent document names the site that kept it"
    );
    assert!(matches!(
        store
            .store_nightscout_documents("ffffffffffffffff", Vec::new())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let query = |before, limit| NightscoutDocumentQuery {
        patient_id: ada,
        collection: Collection::Entries,
        from_ms: Some(at(2).timestamp_millis()),
        to_ms: None,
        kind: Some("sgv".into()),
        id: None,
        before,
        limit,
    };
    let page = store
        .nightscout_documents(query(None, 2))
        .await
        .expect("read");
    assert_eq!(
        page.iter()
            .map(|document| document.time_ms)
            .collect::<Vec<_>>(),
        vec![at(4).timestamp_millis(), at(3).timestamp_millis()]
    );
    let last = &page[1];
    let next = store
        .nightscout_documents(query(Some((last.time_ms, last.row)), 2))
        .await
        .expect("read");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, "a00000000000000000000002");
    let by_id = store
        .nightscout_documents(NightscoutDocumentQuery {
            id: Some("a00000000000000000000004".into()),
            from_ms: None,
            ..query(None, 10)
        })
        .await
        .expect("read");
    assert_eq!(by_id.len(), 1);
    let treatments = store
        .nightscout_documents(NightscoutDocumentQuery {
            collection: Collection::Treatments,
            ..query(None, 10)
        })
        .await
        .expect("read");
    assert!(treatments.is_empty());
}

/// Two uploads of the same documents in opposite orders at once (an app's retry beside
/// its next upload) both succeed, and each document is kept once.
pub async fn overlapping_nightscout_uploads_both_succeed(store: &dyn Store) {
    let ada = patient(store, "Ada").await;
    enable_site(store, "00aa11bb22cc33dd", ada).await;
    let documents: Vec<NewNightscoutDocument> = (1..=40)
        .map(|minute| {
            document(
                Collection::Entries,
                &format!("a{minute:023}"),
                &format!("{minute}|sgv"),
                minute,
            )
        })
        .collect();
    let mut reversed = documents.clone();
    reversed.reverse();
    let (one, other) = futures_util::future::join(
        store.store_nightscout_documents("00aa11bb22cc33dd", documents),
        store.store_nightscout_documents("00aa11bb22cc33dd", reversed),
    )
    .await;
    let (one, other) = (one.expect("one upload"), other.expect("the other upload"));
    let new = one.iter().chain(&other).filter(|kept| kept.new).count();
    assert_eq!(new, 40, "each document kept once");
    let mut ids: Vec<&str> = one.iter().map(|kept| kept.id.as_str()).collect();
    let mut other_ids: Vec<&str> = other.iter().map(|kept| kept.id.as_str()).collect();
    ids.sort_unstable();
    other_ids.sort_unstable();
    assert_eq!(ids, other_ids, "both answered with the same documents");
}
