//! What every live stream does at its end.

use std::convert::Infallible;

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt};

/// `events` until `ended` completes (the caller's session or access ended), then one
/// `ended` event, so that a page stops at once and says why instead of seeing a dropped
/// connection, which `EventSource` would retry.
pub(crate) fn until_ended(
    events: impl Stream<Item = Result<Event, Infallible>>,
    ended: impl Future<Output = ()>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let ended = Box::pin(ended);
    let events = events.take_until(ended);
    events.chain(futures_util::stream::once(async {
        Ok(Event::default()
            .event("ended")
            .data("the session or the access to a patient ended"))
    }))
}
