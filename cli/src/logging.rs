//! The log subscriber of the `vmount` and `mount.vmount` binaries: to stderr, which is
//! the daemon's log file under `vmount start`.
//!
//! A library's report that means nothing is wrong is dropped here rather than shown as an
//! error: a user reads an `ERROR` line in a mount's log as a fault to chase. Only reports
//! matched exactly are dropped ([`is_benign`]), and none while debug logging is on, where
//! a developer wants every line.

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber, writing to stderr with `filter`'s levels, in colour if
/// `color`. A second call (only a test harness makes one) changes nothing.
pub fn init(filter: EnvFilter, color: bool) {
    let debug = filter
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with((!debug).then_some(DropBenign))
        .with(fmt)
        .try_init();
}

/// Whether an event's message is a known-benign report (see the module docs).
pub fn is_benign(message: &str) -> bool {
    #[cfg(unix)]
    if vmount_backend_fuse::is_stale_reply_report(message) {
        return true;
    }
    let _ = message;
    false
}

/// Stops the events whose message [`is_benign`] before any layer formats them.
struct DropBenign;

impl<S: Subscriber> Layer<S> for DropBenign {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        // Only warnings and errors can be shown without debug logging; the rest pass
        // unread, so the check costs nothing on the paths that log at debug level.
        if *event.metadata().level() > tracing::Level::WARN {
            return true;
        }
        let mut message = Message(None);
        event.record(&mut message);
        !message.0.is_some_and(|m| is_benign(&m))
    }
}

/// The `message` field of an event (`log` records bridged by tracing-log carry theirs
/// there too).
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
