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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Notify;
use wardline_store::{ChannelKind, DeliveryOutcome, NotificationRecord, OutboxStore, Recipient};

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
    pub(crate) allow_loopback_webhooks: bool,
}

/// Why Wardline does not send a webhook to this address, if it does not: the machine
/// itself (unless a receiver on it is allowed), link-local addresses (where clouds serve
/// instance metadata and credentials), and addresses that name no single host.
/// Addresses on the hospital's own networks are allowed: that is where receivers live.
pub fn refused_address(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => (!allow_loopback).then_some("a loopback address"),
        IpAddr::V6(v6) if v6.is_loopback() => (!allow_loopback).then_some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        // AWS's instance metadata over IPv6.
        IpAddr::V6(v6) if v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => {
            Some("a cloud metadata address")
        }
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("not a single host's address")
        }
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => {
            Some("not a single host's address")
        }
        _ => None,
    }
}

/// The addresses of a name that Wardline may send to: what the client connects to is
/// what was checked, so a name that resolves elsewhere on the next lookup gains nothing.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = allowed_addresses(&found, allow_loopback);
            if allowed.is_empty() {
                let why = found
                    .first()
                    .and_then(|address| refused_address(address.ip(), allow_loopback))
                    .unwrap_or("no address");
                return Err(
                    format!("{host} resolves to {why}, which Wardline does not send to").into(),
                );
            }
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

fn allowed_addresses(found: &[SocketAddr], allow_loopback: bool) -> Vec<SocketAddr> {
    found
        .iter()
        .copied()
        .filter(|address| refused_address(address.ip(), allow_loopback).is_none())
        .collect()
}

/// Why Wardline does not send webhooks to a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTargetError {
    /// Not an https:// URL (http:// only to this machine) that the webhook client can
    /// parse, or longer than 2,000 characters.
    Malformed,
    /// A host Wardline does not send to, and why.
    Refused(String),
}

/// Whether Wardline sends webhooks to `url`: an https:// URL (http:// only to this
/// machine, when receivers on it are allowed), parsed as the webhook client parses it,
/// whose host, if it is an address, is one Wardline sends to (see [`refused_address`]).
/// A name is checked again at every delivery, as it resolves ([`GuardedResolver`]).
/// Registration and delivery both ask this, so they cannot disagree.
pub fn check_webhook_target(url: &str, allow_loopback: bool) -> Result<(), WebhookTargetError> {
    // The URL parser drops tabs and newlines inside a URL silently; such a URL was not
    // meant as written.
    if url.len() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WebhookTargetError::Malformed);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| WebhookTargetError::Malformed)?;
    let this_machine = match parsed.host() {
        None => return Err(WebhookTargetError::Malformed),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            if name.is_empty() {
                return Err(WebhookTargetError::Malformed);
            }
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(host) => {
            let ip = match host {
                url::Host::Ipv4(v4) => IpAddr::V4(v4),
                url::Host::Ipv6(v6) => IpAddr::V6(v6),
                url::Host::Domain(_) => return Err(WebhookTargetError::Malformed),
            };
            if let Some(why) = refused_address(ip, allow_loopback) {
                return Err(WebhookTargetError::Refused(format!(
                    "{ip} is {why}, which Wardline does not send to"
                )));
            }
            ip.is_loopback()
        }
    };
    if this_machine && !allow_loopback {
        return Err(WebhookTargetError::Refused(
            "this machine, which Wardline sends webhooks to only when the configuration allows it"
                .into(),
        ));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if this_machine => Ok(()),
        _ => Err(WebhookTargetError::Malformed),
    }
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
        .dns_resolver(Arc::new(GuardedResolver {
            allow_loopback: settings.allow_loopback_webhooks,
        }))
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
        // A delivery takes at most the webhook timeout (or the SMTP exchange); the lease
        // outlasts it, so no other worker sends the same notification meanwhile.
        let lease_until = now
            + chrono::Duration::from_std(settings.webhook_timeout * 2 + Duration::from_secs(30))
                .unwrap_or_else(|_| chrono::Duration::minutes(5));
        let due = match store.claim_due_outbox(now, 64, lease_until).await {
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
                let result = deliver(
                    &client,
                    &sealer,
                    smtp.as_ref(),
                    &item,
                    settings.allow_loopback_webhooks,
                )
                .await;
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
            if let Err(error) = store
                .record_delivery(item.key, lease_until, at, outcome)
                .await
            {
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
    match &item.recipient {
        Recipient::Alarm { channel, .. } => channel.kind.as_str(),
        Recipient::VisitReminder { .. } => "reminder",
    }
}

/// One attempt; the error is what an admin sees on a dead letter (no health data).
async fn deliver(
    client: &reqwest::Client,
    sealer: &Sealer,
    smtp: Option<&SmtpSettings>,
    item: &NotificationRecord,
    allow_loopback: bool,
) -> Result<(), String> {
    let body = serde_json::to_vec(&item.payload).map_err(|error| error.to_string())?;
    let channel = match &item.recipient {
        Recipient::Alarm { channel, .. } => channel,
        Recipient::VisitReminder { email, .. } => {
            let smtp = smtp.ok_or_else(|| "no SMTP server is configured".to_owned())?;
            return send_email(smtp, email, item).await;
        }
    };
    match channel.kind {
        ChannelKind::Webhook => {
            // A name is checked again as it resolves (GuardedResolver).
            match check_webhook_target(&channel.target, allow_loopback) {
                Ok(()) => {}
                Err(WebhookTargetError::Refused(why)) => return Err(why),
                Err(WebhookTargetError::Malformed) => {
                    return Err("the webhook URL is not one Wardline sends to".into());
                }
            }
            let secret = channel
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
                .post(&channel.target)
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
            send_email(smtp, &channel.target, item).await
        }
    }
}

async fn send_email(
    smtp: &SmtpSettings,
    recipients: &str,
    item: &NotificationRecord,
) -> Result<(), String> {
    let subject = item.payload["subject"].as_str().unwrap_or("Wardline alarm");
    let text = item.payload["text"].as_str().unwrap_or("");
    send_plain_email(
        smtp,
        recipients,
        subject,
        &format!("{text}\n\nIdempotency key: {}\n", item.idempotency_key),
    )
    .await
}

/// Sends a plain-text message to `recipients` (comma-separated) through the configured
/// SMTP server: alarms' e-mails, and invitations.
pub async fn send_plain_email(
    smtp: &SmtpSettings,
    recipients: &str,
    subject: &str,
    text: &str,
) -> Result<(), String> {
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
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for address in recipients.split(',').map(str::trim) {
        if address.is_empty() {
            continue;
        }
        builder = builder.to(address
            .parse()
            .map_err(|_| "a recipient address is invalid".to_owned())?);
    }
    let message = builder
        .body(text.to_owned())
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
    fn loopback_link_local_and_metadata_addresses_are_not_sent_to() {
        let refused = |text: &str, allow_loopback: bool| {
            refused_address(text.parse().unwrap(), allow_loopback)
        };
        for address in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(refused(address, false).is_some(), "{address}");
        }
        // A receiver on this machine only when allowed; metadata never.
        assert_eq!(refused("127.0.0.1", true), None);
        assert_eq!(refused("::1", true), None);
        assert!(refused("169.254.169.254", true).is_some());
        // The hospital's own networks and the internet are where receivers live.
        for address in [
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.20",
            "fd12:3456::1",
            "203.0.113.7",
            "2001:db8::1",
        ] {
            assert_eq!(refused(address, false), None, "{address}");
        }
    }

    #[test]
    fn a_name_is_sent_only_to_its_allowed_addresses_and_an_address_is_checked_itself() {
        let found: Vec<SocketAddr> = ["127.0.0.1:0", "169.254.169.254:0", "10.0.0.5:0"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(
            allowed_addresses(&found, false),
            ["10.0.0.5:0".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(allowed_addresses(&found, true).len(), 2);
        let refused = |url: &str, allow_loopback: bool| {
            matches!(
                check_webhook_target(url, allow_loopback),
                Err(WebhookTargetError::Refused(_))
            )
        };
        assert!(refused("https://169.254.169.254/latest/meta-data", true));
        assert!(refused("http://[::1]:9000/hook", false));
        assert!(!refused("http://[::1]:9000/hook", true));
        assert!(!refused("https://10.0.0.5/hook", false));
        // Another spelling of an address is the address.
        assert!(refused("https://0x7f.1/hook", false));
        assert!(refused("https://[::ffff:169.254.169.254]/", true));
        assert!(
            !refused("https://hooks.example.org/hook", false),
            "names are checked as they resolve"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_this_machine() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver {
            allow_loopback: false,
        }
        .resolve(name())
        .await;
        assert!(refused.is_err());
        let allowed = GuardedResolver {
            allow_loopback: true,
        }
        .resolve(name())
        .await;
        assert!(
            allowed.is_ok_and(|mut addresses| addresses.all(|address| address.ip().is_loopback()))
        );
    }

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
