//! What one HTTP client may hold of the server: connections in total and per source
//! address, and how long a connection may sit without sending its headers or without
//! any traffic at all. Devices reach the server over MQTT on a listener of its own; these
//! caps keep slow or idle HTTP clients from taking the file descriptors and tasks that
//! devices need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this long.
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed (live
    /// streams send a keep-alive well within it).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds its most connections.
    Total,
    /// The source address holds its most connections.
    Address,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::Address => "address",
        }
    }
}

/// Admits connections within the caps.
#[derive(Debug)]
pub struct ConnectionGate {
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut per_address) = self.gate.per_address.lock()
            && let Some(count) = per_address.get_mut(&self.address)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_address.remove(&self.address);
            }
        }
    }
}

impl ConnectionGate {
    pub fn new(limits: &HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
            max_per_address: limits.max_connections_per_address,
        })
    }

    /// A place for a connection from `address`, if both caps allow it. A trusted proxy
    /// speaks for many clients, so only the total cap applies to it.
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        trusted_proxy: bool,
    ) -> Result<Admitted, Refused> {
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        let mut per_address = self.per_address.lock().map_err(|_| Refused::Total)?;
        let count = per_address.entry(address).or_insert(0);
        if *count >= self.max_per_address && !trusted_proxy {
            return Err(Refused::Address);
        }
        *count += 1;
        Ok(Admitted {
            _permit: permit,
            gate: Arc::clone(self),
            address,
        })
    }
}

/// The client a request comes from: the connection's peer, or, when the peer is a
/// trusted proxy, the right-most `X-Forwarded-For` address that is not itself a trusted
/// proxy (the left-most is whatever the client claimed). An entry that is not an
/// address stops the search at the peer: a proxy that writes those is not trusted.
pub fn client_address(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted_proxies: &[IpAddr],
) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(address) if trusted_proxies.contains(&address) => {}
            Ok(address) => return address,
            Err(_) => return peer,
        }
    }
    peer
}

/// When a connection last moved a byte.
#[derive(Debug, Clone)]
pub struct Activity {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long since the last byte either way.
    pub fn idle_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A connection's stream that notes its activity.
#[derive(Debug)]
pub struct Watched<IO> {
    io: IO,
    activity: Activity,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, activity: Activity) -> Self {
        Self { io, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves a connection until it ends, or until it has moved no byte for `idle` (then it
/// is dropped, which closes it); `None` for the latter.
pub async fn until_idle<F: std::future::Future>(
    connection: F,
    activity: &Activity,
    idle: Duration,
) -> Option<F::Output> {
    tokio::pin!(connection);
    loop {
        let check = idle
            .saturating_sub(activity.idle_for())
            .max(Duration::from_millis(100));
        tokio::select! {
            result = &mut connection => return Some(result),
            () = tokio::time::sleep(check) => {
                if activity.idle_for() >= idle {
                    metrics::counter!("wardline_http_connections_idle_closed_total").increment(1);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: total,
            max_connections_per_address: per_address,
        }
    }

    #[test]
    fn each_address_and_the_server_have_a_cap_and_places_come_back() {
        let gate = ConnectionGate::new(&limits(3, 2));
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let first = gate.admit(one, false).unwrap();
        let _second = gate.admit(one, false).unwrap();
        assert_eq!(gate.admit(one, false).unwrap_err(), Refused::Address);
        let _third = gate.admit(two, false).unwrap();
        assert_eq!(gate.admit(two, false).unwrap_err(), Refused::Total);
        drop(first);
        let _again = gate.admit(one, false).unwrap();
        assert_eq!(
            gate.admit([10, 0, 0, 3].into(), false).unwrap_err(),
            Refused::Total
        );
    }

    /// A connection that reads forever, as hyper waits for a next request.
    async fn reading_forever(mut stream: Watched<tokio::io::DuplexStream>) {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 64];
        while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_dropped_after_moving_no_byte_for_the_idle_time() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::default();
        let watched = Watched::new(server, activity.clone());
        let idle = Duration::from_secs(60);
        let served = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let ended = until_idle(reading_forever(watched), &activity, idle).await;
            (ended.is_none(), started.elapsed())
        });
        // Traffic at 40 s keeps it open past 60 s; then silence ends it at 100 s.
        tokio::time::sleep(Duration::from_secs(40)).await;
        client.write_all(b"x").await.unwrap();
        let (dropped, after) = served.await.unwrap();
        assert!(dropped, "closed for idleness, not ended by the client");
        assert!(
            (Duration::from_secs(100)..Duration::from_secs(101)).contains(&after),
            "after {after:?}"
        );
        drop(client);
    }

    #[test]
    fn a_refusal_by_address_keeps_no_place_of_the_total() {
        let gate = ConnectionGate::new(&limits(2, 1));
        let one: IpAddr = [10, 0, 0, 1].into();
        let _held = gate.admit(one, false).unwrap();
        for _ in 0..5 {
            assert_eq!(gate.admit(one, false).unwrap_err(), Refused::Address);
        }
        assert!(gate.admit([10, 0, 0, 2].into(), false).is_ok());
    }

    #[test]
    fn a_trusted_proxy_has_only_the_total_cap() {
        let gate = ConnectionGate::new(&limits(3, 1));
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let _held: Vec<Admitted> = (0..3).map(|_| gate.admit(proxy, true).unwrap()).collect();
        assert_eq!(gate.admit(proxy, true).unwrap_err(), Refused::Total);
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_right_most_untrusted_hop() {
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let inner: IpAddr = [10, 0, 0, 2].into();
        let trusted = [proxy, inner];
        let headers = |values: &[&str]| {
            let mut map = axum::http::HeaderMap::new();
            for value in values {
                map.append("x-forwarded-for", value.parse().unwrap());
            }
            map
        };
        let client: IpAddr = [203, 0, 113, 9].into();
        // A client's own claim (left) is passed over for what the proxies saw.
        let forwarded = headers(&["198.51.100.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(client_address(proxy, &forwarded, &trusted), client);
        // From anyone else, the header is ignored.
        let stranger: IpAddr = [192, 0, 2, 7].into();
        assert_eq!(client_address(stranger, &forwarded, &trusted), stranger);
        // Garbage, or only proxies: the proxy itself.
        assert_eq!(
            client_address(proxy, &headers(&["unknown"]), &trusted),
            proxy
        );
        assert_eq!(
            client_address(proxy, &headers(&["10.0.0.2"]), &trusted),
            proxy
        );
        assert_eq!(client_address(proxy, &headers(&[]), &trusted), proxy);
        assert_eq!(
            client_address(proxy, &headers(&["2001:db8::5"]), &trusted),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
    }
}
