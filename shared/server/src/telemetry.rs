//! Logging set-up. Services call [`init`] once, first thing in `main`.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter every service logs with unless `RUST_LOG` says otherwise:
/// its own info lines, and only warnings from the libraries beneath it.
pub const DEFAULT_FILTER: &str = "info,sled=warn,h2=warn,tower=warn";

/// Installs the global `tracing` subscriber, writing to stderr.
///
/// `RUST_LOG` overrides `default_filter` (e.g. `"info,sled=warn"`). JSON output
/// is one object per line with the span fields flattened in, which is what log
/// pipelines in Kubernetes expect. Human output is coloured only when stderr
/// is a terminal: redirected to a file or a pipe, colour codes are noise that
/// breaks grep. Returns false if a subscriber was already set (as in tests
/// that install their own).
pub fn init(json: bool, default_filter: &str) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let colour = std::io::stderr().is_terminal();
    subscriber(json, colour, filter, std::io::stderr)
        .try_init()
        .is_ok()
}

/// The subscriber [`init`] installs, writing to `writer`, with ANSI colour
/// only when `colour` is set.
fn subscriber<W>(
    json: bool,
    colour: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour && !json);
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        )
    } else {
        Box::new(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool, colour: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(json, colour, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(records = 3, "something to say");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn colour_only_on_a_terminal() {
        // A file or a pipe (what `init` sees when stderr is not a terminal).
        let plain = logged(false, false);
        assert!(plain.contains("something to say"), "{plain}");
        assert!(
            !plain.contains('\u{1b}'),
            "ANSI codes in a log file: {plain:?}"
        );
        let json = logged(true, true);
        assert!(json.contains("\"records\":3"), "{json}");
        assert!(!json.contains('\u{1b}'), "{json:?}");
        // A terminal keeps its colours.
        assert!(logged(false, true).contains('\u{1b}'));
    }
}
