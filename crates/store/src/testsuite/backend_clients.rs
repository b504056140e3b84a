//! Conformance checks of [`crate::BackendClientStore`].

use chrono::Duration;
use wardline_domain::CareTeamId;

use super::{at, audit};
use crate::{AuditQuery, NewBackendClient, NewCareTeam, Store, StoreError};

fn new_client(id: &str, teams: Vec<CareTeamId>) -> NewBackendClient {
    NewBackendClient {
        id: id.to_owned(),
        name: format!("Integration engine {id}"),
        jwks: r#"{"keys":[]}"#.into(),
        care_teams: teams,
        created: at(0),
        created_by: None,
    }
}

pub async fn backend_clients_take_each_assertion_once_and_lose_tokens_when_revoked(
    store: &dyn Store,
) {
    let ward = store
        .create_care_team(
            NewCareTeam {
                id: CareTeamId::random(),
                name: "Ward 7".into(),
                created: at(0),
            },
            audit("care_teams.create"),
        )
        .await
        .expect("team");
    let engine = store
        .create_backend_client(
            new_client("cl_engine", vec![ward.id]),
            audit("backend_clients.register"),
        )
        .await
        .expect("register");
    assert_eq!(engine.care_teams, vec![ward.id]);
    assert_eq!(engine.revoked, None);
    assert_eq!(engine.jwks, r#"{"keys":[]}"#);
    assert!(matches!(
        store
            .create_backend_client(
                new_client("cl_engine", vec![]),
                audit("backend_clients.register")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        matches!(
            store
                .create_backend_client(
                    new_client("cl_other", vec![CareTeamId::random()]),
                    audit("backend_clients.register")
                )
                .await,
            Err(StoreError::NotFound { .. })
        ),
        "a care team that does not exist"
    );
    assert_eq!(store.backend_client("cl_other").await.expect("read"), None);
    assert_eq!(
        store.backend_client("cl_engine").await.expect("read"),
        Some(engine.clone())
    );
    assert_eq!(
        store.backend_clients().await.expect("list"),
        vec![engine.clone()]
    );

    // Each assertion once; the same jti of another client is another assertion; an
    // expired one is forgotten.
    assert!(
        store
            .record_client_assertion("cl_engine", "a-1", at(5), at(0))
            .await
            .expect("record")
    );
    assert!(
        !store
            .record_client_assertion("cl_engine", "a-1", at(5), at(1))
            .await
            .expect("record")
    );
    let second = store
        .create_backend_client(
            new_client("cl_second", vec![]),
            audit("backend_clients.register"),
        )
        .await
        .expect("register");
    assert!(
        store
            .record_client_assertion(&second.id, "a-1", at(5), at(1))
            .await
            .expect("record")
    );
    assert!(
        store
            .record_client_assertion("cl_engine", "a-1", at(20), at(6))
            .await
            .expect("record"),
        "forgotten once expired"
    );

    // Tokens live until they expire, and end with their client.
    store
        .create_client_token(
            [1; 32],
            "cl_engine",
            "system/*.rs".into(),
            at(10),
            audit("backend_clients.token"),
        )
        .await
        .expect("token");
    store
        .create_client_token(
            [2; 32],
            "cl_second",
            "system/Observation.rs".into(),
            at(10),
            audit("backend_clients.token"),
        )
        .await
        .expect("token");
    let live = store
        .client_token([1; 32], at(9))
        .await
        .expect("read")
        .expect("live");
    assert_eq!(live.client.id, "cl_engine");
    assert_eq!(live.scopes, "system/*.rs");
    assert_eq!(live.expires, at(10));
    assert_eq!(
        store.client_token([1; 32], at(10)).await.expect("read"),
        None
    );
    assert_eq!(
        store.client_token([3; 32], at(1)).await.expect("read"),
        None
    );
    assert!(
        store
            .revoke_backend_client("cl_engine", at(2), audit("backend_clients.revoke"))
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_backend_client("cl_engine", at(3), audit("backend_clients.revoke"))
            .await
            .expect("revoke")
    );
    assert_eq!(
        store.client_token([1; 32], at(3)).await.expect("read"),
        None
    );
    assert!(
        store
            .client_token([2; 32], at(3))
            .await
            .expect("read")
            .is_some()
    );
    let revoked = store
        .backend_client("cl_engine")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(revoked.revoked, Some(at(2)));
    assert_eq!(store.backend_clients().await.expect("list").len(), 2);
    for (action, count) in [
        ("backend_clients.register", 2),
        ("backend_clients.token", 2),
        ("backend_clients.revoke", 1),
    ] {
        let entries = store
            .audit_events(AuditQuery {
                action: Some(action.into()),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .expect("audit");
        assert_eq!(entries.len(), count, "{action}: each change audited once");
    }
    // A token issued later clears those long ended.
    store
        .create_client_token(
            [4; 32],
            "cl_second",
            "system/*.rs".into(),
            at(10) + Duration::hours(2),
            crate::AuditEvent {
                time: at(60),
                ..audit("backend_clients.token")
            },
        )
        .await
        .expect("token");
    assert_eq!(
        store.client_token([2; 32], at(3)).await.expect("read"),
        None
    );
}
