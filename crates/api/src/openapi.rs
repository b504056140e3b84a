//! The OpenAPI 3.1 document, built from one table of operations. A test checks that every
//! operation in the table is routed, so the document cannot drift from the router.

use axum::Json;
use serde_json::{Map, Value, json};

use crate::error::ERROR_TABLE;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// A person's session (bearer token or cookie).
    Session,
    /// A device's secret as a bearer token.
    Device,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// Query parameters as `(name, description)`.
    pub query: &'static [(&'static str, &'static str)],
    pub success: u16,
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    success: u16,
) -> Operation {
    Operation {
        method,
        path,
        summary,
        auth,
        query: &[],
        success,
    }
}

/// Every API operation.
pub const OPERATIONS: &[Operation] = &[
    op("get", "/healthz", "Liveness probe", Auth::None, 200),
    op(
        "get",
        "/metrics",
        "Prometheus metrics (no patient or device identifiers)",
        Auth::None,
        200,
    ),
    op(
        "get",
        "/api/v1/openapi.json",
        "This document",
        Auth::None,
        200,
    ),
    op(
        "post",
        "/api/v1/auth/login",
        "Log in with username and password; returns a session token and sets an HttpOnly cookie",
        Auth::None,
        200,
    ),
    op(
        "post",
        "/api/v1/auth/logout",
        "Revoke the current session",
        Auth::Session,
        204,
    ),
    op(
        "get",
        "/api/v1/me",
        "The logged-in user",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/users",
        "List users (admin)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/users",
        "Create a user (admin); a password is generated and returned once if none is given",
        Auth::Session,
        201,
    ),
    op(
        "post",
        "/api/v1/users/{user_id}/disable",
        "Disable an account (admin): its sessions end and it cannot log in; never one's own",
        Auth::Session,
        204,
    ),
    op(
        "get",
        "/api/v1/care-teams",
        "List care teams (admin)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/care-teams",
        "Create a care team (admin)",
        Auth::Session,
        201,
    ),
    op(
        "post",
        "/api/v1/care-teams/{team_id}/members",
        "Add a clinician or nurse to a care team (admin)",
        Auth::Session,
        204,
    ),
    op(
        "post",
        "/api/v1/care-teams/{team_id}/patients",
        "Put a patient in a care team's care (admin)",
        Auth::Session,
        204,
    ),
    Operation {
        query: &[
            ("patient_id", "only events about this patient"),
            ("user_id", "only events by this user"),
            ("action", "only this action, e.g. observations.read"),
            ("before", "sequence number to page backwards from"),
            ("limit", "at most this many (default 100, max 1000)"),
        ],
        ..op(
            "get",
            "/api/v1/audit",
            "The audit trail, newest first (admin)",
            Auth::Session,
            200,
        )
    },
    op(
        "get",
        "/api/v1/patients",
        "Patients the caller may see",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/patients",
        "Create a patient record (admin)",
        Auth::Session,
        201,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}",
        "One patient (care team or the patient)",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}/devices",
        "Devices currently assigned to the patient",
        Auth::Session,
        200,
    ),
    Operation {
        query: &[
            ("code", "LOINC code, e.g. 8867-4 (required)"),
            ("from", "RFC 3339, inclusive (default: 24 h before `to`)"),
            ("to", "RFC 3339, exclusive (default: now)"),
            ("limit", "page size, 1 to 10000 (default 1000)"),
            ("cursor", "`next_cursor` from the previous page"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/observations",
            "Observations of one code over a time range, oldest first, paged",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            ("code", "LOINC code or Wardline code name"),
            ("from", "RFC 3339 (default: 30 days before `to`)"),
            (
                "to",
                "RFC 3339 (default: now); at most 366 days after `from`",
            ),
            (
                "bucket_secs",
                "bucket width, 1 to 86400 s (default 3600); at most 10000 buckets",
            ),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/observations/summary",
            "Count, minimum, maximum and mean of one code per time bucket, for long-range charts",
            Auth::Session,
            200,
        )
    },
    op(
        "get",
        "/api/v1/patients/{patient_id}/observations/latest",
        "The newest observation of each code",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}/observations/stream",
        "Server-Sent Events: `observation` events as readings are committed, `news2` events as NEWS2 is recomputed",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/observations/stream",
        "Server-Sent Events for every patient the caller may read (a ward): `observation` and `news2` events on one connection",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}/care-teams",
        "Who can see the patient's data: the active members of the patient's care teams, by name and role",
        Auth::Session,
        200,
    ),
    Operation {
        query: &[
            (
                "before",
                "only entries with a smaller sequence number (paging back)",
            ),
            ("limit", "1 to 500 (default 50)"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/access-log",
            "Every recorded look at the patient's data and every refused attempt, newest first (who, role, action, outcome)",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            ("signal", "e.g. ecg-lead-ii"),
            ("from", "RFC 3339 (default: 1 min before `to`)"),
            (
                "to",
                "RFC 3339 (default: now); the window spans at most 1 h",
            ),
            ("limit", "most chunks (default 120)"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/waveforms",
            "Waveform chunks overlapping a time window, decoded to samples",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            ("from", "RFC 3339, inclusive (default: 14 days before `to`)"),
            (
                "to",
                "RFC 3339, exclusive (default: now); the period spans at most 90 days",
            ),
            (
                "utc_offset",
                "the patient's clock for the time-of-day profile, e.g. +01:00 (default +00:00)",
            ),
            (
                "agp_bin_minutes",
                "AGP bin width, a divisor of 1440 up to 60 (default 15)",
            ),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/reports/cgm",
            "CGM report from stored CGM glucose (99504-3): International Consensus metrics, episodes and the ambulatory glucose profile",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            ("from", "RFC 3339 (default: 24 h before `to`)"),
            ("to", "RFC 3339 (default: now)"),
            ("limit", "at most this many, 1 to 10000 (default 1000)"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/rhythm-events",
            "Rhythm events from the streaming ECG analysis (bradycardia, tachycardia, pause, atrial fibrillation, poor signal) overlapping a time range",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            ("from", "RFC 3339, inclusive (default: 24 h before `to`)"),
            ("to", "RFC 3339, exclusive (default: now)"),
            ("limit", "at most this many, 1 to 10000 (default 1000)"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/news2",
            "NEWS2 results recomputed from the latest vital signs, oldest first; a partial result gives only a minimum total and risk and names the missing parameters",
            Auth::Session,
            200,
        )
    },
    op(
        "get",
        "/api/v1/patients/{patient_id}/news2/latest",
        "The newest NEWS2 result",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/devices",
        "List devices (admin)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/devices",
        "Enrol a device (admin); its secret and connection settings are returned once",
        Auth::Session,
        201,
    ),
    op(
        "post",
        "/api/v1/devices/{device_id}/assignments",
        "Assign a device to a patient from a time on (admin)",
        Auth::Session,
        204,
    ),
    op(
        "post",
        "/api/v1/devices/{device_id}/revoke",
        "Revoke a device's credential and end its connection (admin)",
        Auth::Session,
        204,
    ),
    op(
        "post",
        "/api/v1/devices/{device_id}/readings",
        "A device posts one payload (docs/device-protocol.md); 200 only after commit",
        Auth::Device,
        200,
    ),
    op(
        "get",
        "/api/v1/gateways",
        "Home gateways with their last contact, backlog and clock offset (admin)",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/gateways/{gateway_id}",
        "One home gateway's last contact, backlog and clock offset (admin)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/gateways/{gateway_id}/forward",
        "A gateway forwards queued device messages with its own secret (docs/gateway.md); one verdict per message, 200 only after commit",
        Auth::Device,
        200,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}/care-plan",
        "The patient's care plan (programme and rules) now, or in force at `?at=` (RFC 3339)",
        Auth::Session,
        200,
    ),
    op(
        "put",
        "/api/v1/patients/{patient_id}/care-plan",
        "Change the care plan with a reason: `program` (+ `baseline`) assigns a programme's defaults (care team clinician or nurse, or admin); `edit` adds, replaces or removes one rule (care team clinician or nurse). Every change is a new version",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/patients/{patient_id}/care-plan/versions",
        "Every version of the care plan: who, when, why, the rule before and after",
        Auth::Session,
        200,
    ),
    Operation {
        query: &[
            ("from", "RFC 3339, raised at or after"),
            ("to", "RFC 3339, raised before"),
            (
                "state",
                "open, acknowledged, snoozed, resolved, unresolved or all (default)",
            ),
            ("limit", "1 to 500 (default 100)"),
        ],
        ..op(
            "get",
            "/api/v1/patients/{patient_id}/alarms",
            "The patient's alarms, newest first, each with its history",
            Auth::Session,
            200,
        )
    },
    Operation {
        query: &[
            (
                "state",
                "open, acknowledged, snoozed, resolved (comma-separated), unresolved (default) or all",
            ),
            ("limit", "1 to 1000 (default 200)"),
        ],
        ..op(
            "get",
            "/api/v1/alarms",
            "The caller's alarm inbox across the patients of their care teams",
            Auth::Session,
            200,
        )
    },
    op(
        "get",
        "/api/v1/alarms/stream",
        "Server-Sent Events: `alarm` events (opened, acknowledged, snoozed, resolved, notified...) for the caller's patients",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/alarms/{alarm_id}",
        "One alarm with its history, delivery status per channel, and the care plan version in force when it was raised",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/alarms/{alarm_id}/acknowledge",
        "Acknowledge an alarm (care team); escalation stops",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/alarms/{alarm_id}/resolve",
        "Resolve an alarm with a `note` (care team)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/alarms/{alarm_id}/snooze",
        "Pause an alarm's notifications for `minutes` or `seconds`, at most 30 min (high), 60 min (medium), 4 h (low) (care team)",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/care-teams/{team_id}/escalation-policy",
        "The care team's escalation policy (admin)",
        Auth::Session,
        200,
    ),
    op(
        "put",
        "/api/v1/care-teams/{team_id}/escalation-policy",
        "Set the care team's escalation policy: steps with delays and recipients, repeat delay and rounds (admin)",
        Auth::Session,
        200,
    ),
    op(
        "get",
        "/api/v1/care-teams/{team_id}/notification-channels",
        "The care team's webhook and e-mail channels, without secrets (admin)",
        Auth::Session,
        200,
    ),
    op(
        "post",
        "/api/v1/care-teams/{team_id}/notification-channels",
        "Add a webhook (`url`) or e-mail (`recipients`) channel, `minimal` content by default; a webhook's signing secret is returned once (admin)",
        Auth::Session,
        201,
    ),
    op(
        "delete",
        "/api/v1/care-teams/{team_id}/notification-channels/{channel_id}",
        "Stop using a channel (admin)",
        Auth::Session,
        204,
    ),
    op(
        "post",
        "/api/v1/devices/{device_id}/status",
        "A device reports `battery_percent` and `fault` (null when none) for its patient's technical alarms (low battery, device error); 202 once handed to the alarm engine",
        Auth::Device,
        202,
    ),
    Operation {
        query: &[("limit", "1 to 1000 (default 100)")],
        ..op(
            "get",
            "/api/v1/notifications/dead-letters",
            "Notifications given up after the retry horizon (admin)",
            Auth::Session,
            200,
        )
    },
    op(
        "post",
        "/api/v1/notifications/{notification_id}/retry",
        "Put a dead letter back in the outbox (admin)",
        Auth::Session,
        204,
    ),
];

/// Builds the OpenAPI document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let entry = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let mut parameters: Vec<Value> = path_parameters(operation.path)
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(operation.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": *name == "code", "description": description, "schema": {"type": "string"}})
        }));
        let security = match operation.auth {
            Auth::None => json!([]),
            Auth::Session => json!([{"session": []}, {"cookie": []}]),
            Auth::Device => json!([{"device": []}]),
        };
        let mut responses = Map::new();
        responses.insert(
            operation.success.to_string(),
            json!({"description": "success"}),
        );
        for (code, status, meaning) in ERROR_TABLE {
            responses
                .entry(status.to_string())
                .or_insert_with(|| json!({"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
            if let Some(Value::String(description)) = responses
                .get_mut(&status.to_string())
                .and_then(|r| r.get_mut("description"))
            {
                if !description.is_empty() {
                    description.push_str("; ");
                }
                description.push_str(&format!("`{code}`: {meaning}"));
            }
        }
        if let Value::Object(methods) = entry {
            methods.insert(
                operation.method.to_owned(),
                json!({
                    "summary": operation.summary,
                    "parameters": parameters,
                    "security": security,
                    "responses": responses,
                }),
            );
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Wardline API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Remote patient monitoring. Every read of a patient's data is checked against the caller's care teams and audited."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer", "description": "session token from /api/v1/auth/login"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE},
                "device": {"type": "http", "scheme": "bearer", "description": "the device secret shown at enrolment"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string", "enum": ERROR_TABLE.iter().map(|(code, _, _)| *code).collect::<Vec<_>>()},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "the request or payload field at fault"},
                        "kind": {"type": "string", "description": "payload error category"}
                    }}}
                }
            }
        }
    })
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
