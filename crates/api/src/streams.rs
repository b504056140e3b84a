//! What every live stream does while it lives, and at its end.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt};

/// How often every stream says it is alive. A page that hears nothing, not even this,
/// for a few of these knows the server or the network has stalled and says its values
/// may be out of date, instead of showing "Live" over a frozen screen. (A keep-alive
/// comment would not do: `EventSource` does not show comments to the page.)
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

/// `events`, with a `heartbeat` event (the server's clock) every [`HEARTBEAT`], until
/// `ended` completes (the caller's session or access ended) or the events do (a closed
/// visit's room), then one `ended` event saying which, so that a page stops at once and
/// says why instead of seeing a dropped connection, which `EventSource` would retry.
pub(crate) fn live_stream(
    events: impl Stream<Item = Result<Event, Infallible>>,
    ended: impl Future<Output = ()>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let heartbeats = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(HEARTBEAT).await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Some((Ok(Event::default().event("heartbeat").data(now)), ()))
    });
    let ended = Box::pin(ended);
    // The stream ends when its events do, not only when access does: heartbeats alone
    // would keep it open for nothing.
    let events_over = Arc::new(AtomicBool::new(false));
    let marker = Arc::clone(&events_over);
    let events = events
        .map(Some)
        .chain(futures_util::stream::once(async move {
            marker.store(true, Ordering::Relaxed);
            None
        }));
    let events = futures_util::stream::select(events, heartbeats.map(Some))
        .take_while(|item| futures_util::future::ready(item.is_some()))
        .filter_map(futures_util::future::ready)
        .take_until(ended);
    events.chain(futures_util::stream::once(async move {
        let why = if events_over.load(Ordering::Relaxed) {
            "the stream's events ended (a closed visit's room, or a server going away)"
        } else {
            "the session or the access to a patient ended"
        };
        Ok(Event::default().event("ended").data(why))
    }))
}
