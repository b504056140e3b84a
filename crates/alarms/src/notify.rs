//! Delivery of the durable outbox, at least once.
//!
//! A notification is written to the outbox in the same commit as the alarm change that
//! causes it; this worker delivers what is due, records every attempt, retries with
//! exponential backoff and jitter up to the retry horizon (hours by default), and then
//! leaves a dead letter for an admin. A restart loses nothing: pending rows are simply
//! due again. Receivers de-duplicate by the idempotency key.
//!
//! Webhooks: `POST` of the JSON payload with `X-Wardline-Timestamp` (Unix seconds) and
//! `X-Wardline-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Notify;
use wardline_store::{ChannelKind, DeliveryOutcome, NotificationRecord, OutboxStore};

use crate::clock::Clock;

use crate::secrets::Sealer;

/// Where e-mail goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: String,
    /// Upgrade with STARTTLS (required for any server not on this machine).
    pub starttls: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DeliverySettings {
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) retry_horizon: chrono::Duration,
    pub(crate) webhook_timeout: Duration,
    pub(crate) smtp: Option<SmtpSettings>,
}

/// `sha256=<hex>` of HMAC-SHA256 over `"{timestamp}.{body}"`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// The delay before attempt `attempts + 1`: base x 2^attempts, at most `max`, +-20 %.
pub(crate) fn backoff(
    base: Duration,
    max: Duration,
    attempts: u32,
    random: &SystemRandom,
) -> Duration {
    let factor = 2f64.powi(i32::try_from(attempts.min(30)).unwrap_or(30));
    let plain = (base.as_secs_f64() * factor).min(max.as_secs_f64());
    let mut byte = [0u8; 1];
    let jitter = if random.fill(&mut byte).is_ok() {
        0.8 + 0.4 * f64::from(byte[0]) / 255.0
    } else {
        1.0
    };
    Duration::from_secs_f64((plain * jitter).max(0.01))
}

pub(crate) async fn run(
    store: Arc<dyn OutboxStore>,
    sealer: Arc<Sealer>,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
) {
    // reqwest is built without a default crypto provider: Wardline uses ring throughout.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(settings.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook client; notifications stay queued");
            return;
        }
    };
    let random = SystemRandom::new();
    loop {
        let now = clock.now();
        let due = match store.due_outbox(now, 64).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the notification outbox");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut deliveries = tokio::task::JoinSet::new();
        for item in due {
            let client = client.clone();
            let sealer = Arc::clone(&sealer);
            let smtp = settings.smtp.clone();
            deliveries.spawn(async move {
                let result = deliver(&client, &sealer, smtp.as_ref(), &item).await;
                (item, result)
            });
        }
        while let Some(joined) = deliveries.join_next().await {
            let Ok((item, result)) = joined else {
                continue;
            };
            let at = clock.now();
            let outcome = match result {
                Ok(()) => {
                    metrics::counter!("wardline_notifications_delivered_total", "channel" => channel_label(&item)).increment(1);
                    DeliveryOutcome::Delivered
                }
                Err(error) => {
                    metrics::counter!("wardline_notification_attempts_failed_total", "channel" => channel_label(&item)).increment(1);
                    let attempts = item.attempts.saturating_add(1);
                    let horizon_end = item.created + settings.retry_horizon;
                    if at >= horizon_end {
                        metrics::counter!("wardline_notifications_dead_total", "channel" => channel_label(&item)).increment(1);
                        DeliveryOutcome::Dead { error }
                    } else {
                        let delay = backoff(
                            settings.retry_base,
                            settings.retry_max,
                            attempts.saturating_sub(1),
                            &random,
                        );
                        let next = at
                            + chrono::Duration::from_std(delay)
                                .unwrap_or_else(|_| chrono::Duration::seconds(60));
                        DeliveryOutcome::Retry {
                            next_attempt: next.min(horizon_end),
                            error,
                        }
                    }
                }
            };
            if let Err(error) = store.record_delivery(item.key, at, outcome).await {
                tracing::warn!(%error, "cannot record a delivery attempt");
            }
        }
        let next: Option<DateTime<Utc>> = store.next_outbox_attempt().await.ok().flatten();
        let wait = next
            .map(|next| (next - clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(5))
            .min(Duration::from_secs(5));
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

fn channel_label(item: &NotificationRecord) -> &'static str {
    item.channel.kind.as_str()
}

/// Whether the webhook client can send to this URL at all: a target it cannot parse
/// (e.g. `https://[x`) would only ever make dead letters.
pub fn webhook_url_parses(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok()
}

/// One attempt; the error is what an admin sees on a dead letter (no health data).
async fn deliver(
    client: &reqwest::Client,
    sealer: &Sealer,
    smtp: Option<&SmtpSettings>,
    item: &NotificationRecord,
) -> Result<(), String> {
    let body = serde_json::to_vec(&item.payload).map_err(|error| error.to_string())?;
    match item.channel.kind {
        ChannelKind::Webhook => {
            let secret = item
                .channel
                .sealed_secret
                .as_deref()
                .ok_or_else(|| "the webhook has no secret".to_owned())
                .and_then(|sealed| {
                    sealer
                        .open(sealed)
                        .map_err(|_| "the webhook secret cannot be opened".to_owned())
                })?;
            let timestamp = Utc::now().timestamp();
            let signature = sign(&secret, timestamp, &body);
            let response = client
                .post(&item.channel.target)
                .header("content-type", "application/json")
                .header("x-wardline-timestamp", timestamp.to_string())
                .header("x-wardline-signature", signature)
                .header("x-wardline-idempotency-key", &item.idempotency_key)
                .body(body)
                .send()
                .await
                .map_err(|error| {
                    if error.is_timeout() {
                        "timed out".to_owned()
                    } else if error.is_connect() {
                        "connection failed".to_owned()
                    } else {
                        "request failed".to_owned()
                    }
                })?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", response.status().as_u16()))
            }
        }
        ChannelKind::Email => {
            let smtp = smtp.ok_or_else(|| "no SMTP server is configured".to_owned())?;
            send_email(smtp, item).await
        }
    }
}

async fn send_email(smtp: &SmtpSettings, item: &NotificationRecord) -> Result<(), String> {
    let transport = if smtp.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|error| format!("SMTP: {error}"))?
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(20)))
            .build()
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(20)))
            .build()
    };
    let from = smtp
        .from
        .parse()
        .map_err(|_| "the configured sender address is invalid".to_owned())?;
    let subject = item.payload["subject"]
        .as_str()
        .unwrap_or("Wardline alarm")
        .to_owned();
    let text = item.payload["text"].as_str().unwrap_or("").to_owned();
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for address in item.channel.target.split(',').map(str::trim) {
        if address.is_empty() {
            continue;
        }
        builder = builder.to(address
            .parse()
            .map_err(|_| "a recipient address is invalid".to_owned())?);
    }
    let message = builder
        .body(format!(
            "{text}\n\nIdempotency key: {}\n",
            item.idempotency_key
        ))
        .map_err(|error| format!("building the message: {error}"))?;
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|error| format!("SMTP: {error}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = sign(b"secret", 1_700_000_000, b"{\"x\":1}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(b"secret", 1_700_000_001, b"{\"x\":1}"));
        assert_ne!(a, sign(b"secret", 1_700_000_000, b"{\"x\":2}"));
        assert_ne!(a, sign(b"other", 1_700_000_000, b"{\"x\":1}"));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_maximum() {
        let random = SystemRandom::new();
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(1800);
        let first = backoff(base, max, 0, &random).as_secs_f64();
        assert!((8.0..=12.0).contains(&first), "{first}");
        let fourth = backoff(base, max, 3, &random).as_secs_f64();
        assert!((64.0..=96.0).contains(&fourth), "{fourth}");
        let late = backoff(base, max, 20, &random).as_secs_f64();
        assert!((1440.0..=2160.0).contains(&late), "{late}");
    }
}
