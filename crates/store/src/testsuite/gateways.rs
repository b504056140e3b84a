//! Checks of [`GatewayStore`](crate::GatewayStore).

use wardline_domain::{DeviceId, DeviceKind};

use super::{at, audit, new_device, patient};
use crate::*;

pub async fn gateways_report_and_list(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let enrol = |id: &str, kind: DeviceKind| {
        let id = DeviceId::parse(id).expect("id");
        async move {
            store
                .enrol_device(
                    NewDevice {
                        kind,
                        ..new_device(&id)
                    },
                    Some(InitialAssignment {
                        patient_id: alice,
                        from: at(0),
                    }),
                    audit("devices.enrol"),
                )
                .await
                .expect("enrol");
            id
        }
    };
    let gateway = enrol("gw-001", DeviceKind::Gateway).await;
    let cgm = enrol("cgm-001", DeviceKind::Cgm).await;
    let cuff = enrol("cuff-001", DeviceKind::BloodPressureCuff).await;
    assert_eq!(
        store.gateway_devices(&gateway).await.expect("devices"),
        vec![cgm, cuff],
        "the patient's other devices, not the gateway itself"
    );
    let statuses = store.gateway_statuses().await.expect("statuses");
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        statuses[0].last_contact, None,
        "listed before its first contact"
    );
    assert_eq!(statuses[0].patient_id, Some(alice));
    let report = GatewayReport {
        gateway_id: gateway.clone(),
        contact: at(5),
        remote_addr: Some("192.0.2.7".into()),
        backlog_messages: 40,
        backlog_bytes: 4000,
        oldest_queued: Some(at(1)),
        disk_limit_bytes: 1 << 30,
        near_disk_limit: false,
        clock_offset_ms: Some(-250),
        corrected_timestamps: 3,
        forwarded_messages: 10,
    };
    store
        .record_gateway_contact(report.clone())
        .await
        .expect("contact");
    store
        .record_gateway_contact(GatewayReport {
            contact: at(6),
            backlog_messages: 0,
            forwarded_messages: 40,
            ..report.clone()
        })
        .await
        .expect("second contact");
    let status = &store.gateway_statuses().await.expect("statuses")[0];
    assert_eq!(status.last_contact, Some(at(6)));
    assert_eq!(status.backlog_messages, 0);
    assert_eq!(status.forwarded_messages, 50, "forwarded messages add up");
    assert_eq!(status.clock_offset_ms, Some(-250));
    assert!(matches!(
        store
            .record_gateway_contact(GatewayReport {
                gateway_id: DeviceId::parse("gw-ghost").expect("id"),
                ..report
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
}
