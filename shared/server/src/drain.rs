//! Shutdown waits for its users, as in mini-redis (`src/server.rs`): every
//! connection handler holds a clone of a sender, and the server's `run`
//! returns only after `recv` on the other end says every clone has dropped.
//!
//! Here the handlers are tonic's per-connection services, so the clone rides
//! in a tower layer ([`Tracker::layer`]): each service the layer wraps, and
//! each response future it returns, holds one. A server wraps its router in
//! the layer, serves, drops its own [`Tracker`], then awaits
//! [`Drained::wait`]. When that returns, no connection task still holds the
//! service state (the hub or the agent, and through them sled), so a test
//! can reopen the data directory at once, with no retry loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

/// Held by everything that must be gone before shutdown completes.
#[derive(Debug, Clone)]
pub struct Tracker {
    _held: mpsc::Sender<()>,
}

/// The other end: resolves when every [`Tracker`] has dropped.
#[derive(Debug)]
pub struct Drained {
    rx: mpsc::Receiver<()>,
}

/// A new tracker and the receiver that waits for all of its clones.
pub fn tracker() -> (Tracker, Drained) {
    let (tx, rx) = mpsc::channel(1);
    (Tracker { _held: tx }, Drained { rx })
}

impl Tracker {
    /// A tower layer whose services and response futures each hold a clone.
    pub fn layer(&self) -> TrackLayer {
        TrackLayer {
            tracker: self.clone(),
        }
    }
}

impl Drained {
    /// Waits until every [`Tracker`] clone has dropped (nothing is ever sent,
    /// so `recv` returns `None` exactly then).
    pub async fn wait(mut self) {
        let _ = self.rx.recv().await;
    }

    /// [`Drained::wait`], for at most `limit`; whether everything drained.
    pub async fn wait_at_most(self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.wait()).await.is_ok()
    }
}

/// Wraps services so that each holds a [`Tracker`] clone.
#[derive(Debug, Clone)]
pub struct TrackLayer {
    tracker: Tracker,
}

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            tracker: self.tracker.clone(),
        }
    }
}

/// A service holding a [`Tracker`] clone for as long as it (or a response
/// future it returned) lives. `inner` is declared first so that it drops
/// first: the tracker goes only after the state it guards.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    tracker: Tracker,
}

impl<S, R> tower_service::Service<R> for Tracked<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        TrackedFuture {
            inner: Box::pin(self.inner.call(request)),
            _tracker: self.tracker.clone(),
        }
    }
}

/// A response future holding a [`Tracker`] clone until it completes or drops.
pub struct TrackedFuture<F> {
    inner: Pin<Box<F>>,
    _tracker: Tracker,
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_layer::Layer;
    use tower_service::Service;

    /// A service holding state, as the hub's services hold the hub.
    #[derive(Clone)]
    struct Holds(std::sync::Arc<()>);

    impl Service<()> for Holds {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            let _state = &self.0;
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_live_response_future_holds_the_drain() {
        let state = std::sync::Arc::new(());
        let (tracker, drained) = tracker();
        let mut service = tracker.layer().layer(Holds(state.clone()));
        let pending = service.call(());
        drop(tracker);
        drop(service);
        // Only the response future is left, and it still holds a tracker.
        assert!(!drained.wait_at_most(Duration::from_millis(50)).await);
        drop(pending);
        assert_eq!(std::sync::Arc::strong_count(&state), 1);
    }

    #[tokio::test]
    async fn drained_returns_once_all_clones_are_gone() {
        let (tracker, drained) = tracker();
        let service = tracker.layer().layer(Holds(std::sync::Arc::new(())));
        let held = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(service);
        });
        drop(tracker);
        drained.wait().await;
        held.await.unwrap();
    }
}
