//! Checks of [`TemplateStore`](crate::TemplateStore).

use super::{at, audit};
use crate::{AuditQuery, NewMappingTemplate, Store, StoreError, TemplateStatus};

fn new_template(id: &str, model: &str, minute: i64) -> NewMappingTemplate {
    NewMappingTemplate {
        id: id.into(),
        model: model.into(),
        device_template: format!(
            r#"{{"templateType": "CollectionContent", "template": [], "n": "{id}"}}"#
        ),
        fhir_template: r#"{"templateType": "CollectionFhir", "template": []}"#.into(),
        created: at(minute),
        created_by: None,
    }
}

/// Each registration of a model is its next version, kept as sent; putting one in force
/// retires the one that was, per model; retiring leaves none in force; each change is
/// audited in its commit.
pub async fn mapping_templates_are_versioned_one_in_force_per_model(store: &dyn Store) {
    let first = store
        .add_mapping_template(
            new_template("a1", "Oxi 3000", 0),
            audit("template.register"),
        )
        .await
        .expect("register");
    assert_eq!((first.version, first.status), (1, TemplateStatus::Draft));
    assert!(first.device_template.contains("\"n\": \"a1\""));
    let second = store
        .add_mapping_template(
            new_template("a2", "Oxi 3000", 1),
            audit("template.register"),
        )
        .await
        .expect("register again");
    assert_eq!(second.version, 2);
    let other = store
        .add_mapping_template(new_template("b1", "Cuff 7", 2), audit("template.register"))
        .await
        .expect("another model");
    assert_eq!(other.version, 1);
    let duplicate = store
        .add_mapping_template(new_template("a1", "Cuff 7", 3), audit("template.register"))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict { .. })),
        "{duplicate:?}"
    );

    assert!(
        store
            .mapping_templates_in_force()
            .await
            .expect("in force")
            .is_empty()
    );
    let in_force = store
        .put_mapping_template_in_force("a1", at(10), audit("template.in_force"))
        .await
        .expect("in force");
    assert_eq!(
        (in_force.status, in_force.in_force_from),
        (TemplateStatus::InForce, Some(at(10)))
    );
    store
        .put_mapping_template_in_force("b1", at(11), audit("template.in_force"))
        .await
        .expect("in force");
    // The next version replaces the first of its model, not the other model's.
    store
        .put_mapping_template_in_force("a2", at(12), audit("template.in_force"))
        .await
        .expect("in force");
    let mut live: Vec<(String, u32)> = store
        .mapping_templates_in_force()
        .await
        .expect("in force")
        .into_iter()
        .map(|template| (template.id, template.version))
        .collect();
    live.sort();
    assert_eq!(live, [("a2".to_owned(), 2), ("b1".to_owned(), 1)]);
    let retired = store
        .mapping_template("a1")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        (retired.status, retired.retired),
        (TemplateStatus::Retired, Some(at(12)))
    );

    // Retiring: only what is in force; then the model has none.
    let not_in_force = store
        .retire_mapping_template("a1", at(13), audit("template.retire"))
        .await;
    assert!(
        matches!(not_in_force, Err(StoreError::Invalid(_))),
        "{not_in_force:?}"
    );
    let unknown = store
        .put_mapping_template_in_force("zz", at(13), audit("template.in_force"))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
    store
        .retire_mapping_template("a2", at(14), audit("template.retire"))
        .await
        .expect("retire");
    let live = store.mapping_templates_in_force().await.expect("in force");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, "b1");
    // A roll-back: a retired version goes back in force.
    let back = store
        .put_mapping_template_in_force("a1", at(15), audit("template.in_force"))
        .await
        .expect("roll back");
    assert_eq!((back.status, back.retired), (TemplateStatus::InForce, None));

    let all: Vec<String> = store
        .mapping_templates()
        .await
        .expect("list")
        .into_iter()
        .map(|template| template.id)
        .collect();
    assert_eq!(all, ["b1", "a2", "a1"]);
    assert_eq!(store.mapping_template("zz").await.expect("read"), None);
    let audited = store
        .audit_events(AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    let count = |action: &str| {
        audited
            .iter()
            .filter(|event| event.action == action)
            .count()
    };
    assert_eq!(
        (
            count("template.register"),
            count("template.in_force"),
            count("template.retire")
        ),
        (3, 4, 1)
    );
}
