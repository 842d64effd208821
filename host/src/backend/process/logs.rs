//! Worker logs reach the parent's `tracing`: the worker forwards its events as frames and
//! the parent re-emits them with the worker's PID.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

use super::protocol::{LogRecord, Reply, write_frame};
use crate::text;

/// The most bytes of one forwarded log line: a guest's line plus its fields.
const FORWARDED_LOG_BYTES: usize = text::MAX_LOG_BYTES + 1024;

/// The worker's side of the protocol channel, shared by the attempt loop and the log layer.
pub(crate) type SharedWriter = Arc<Mutex<BufWriter<File>>>;

/// A `tracing` layer that sends each event to the parent as a [`Reply::Log`] frame.
pub(crate) struct ForwardLayer {
    out: SharedWriter,
}

impl ForwardLayer {
    pub(crate) fn new(out: SharedWriter) -> Self {
        Self { out }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        let record = LogRecord {
            level: level_number(*metadata.level()),
            target: metadata.target().to_string(),
            // An oversized line is cut, with a marker that gives its length.
            message: text::truncate_owned(text.finish(), FORWARDED_LOG_BYTES),
        };
        // A worker whose channel is gone is about to be reaped; its logs have nowhere to go.
        if let Ok(mut out) = self.out.lock() {
            let _ = write_frame(&mut *out, &Reply::Log(record));
        }
    }
}

/// The message followed by the other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        self.message
    }
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

fn level_number(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Re-emits a worker's event in the parent: guest, HTTP and wasmtime events under their own
/// targets (so a filter such as `osiiso::guest=info` or `wasmtime_wasi_http=error` works on
/// every queue), anything else under `osiiso_host::worker`.
pub(crate) fn emit(pid: u32, record: &LogRecord) {
    let origin = &record.target;
    // Guest lines arrive escaped already; anything else with a control character is escaped
    // here, so that no forwarded line can split into two or act on a terminal.
    let message = text::truncate(&record.message, FORWARDED_LOG_BYTES);
    let message = if message.chars().any(char::is_control) {
        text::escape_control(&message).into_owned()
    } else {
        message.into_owned()
    };
    macro_rules! forward {
        ($target:literal) => {
            match record.level {
                0 | 1 => tracing::event!(target: $target, Level::ERROR, worker_pid = pid, origin = %origin, "{message}"),
                2 => tracing::event!(target: $target, Level::WARN, worker_pid = pid, origin = %origin, "{message}"),
                3 => tracing::event!(target: $target, Level::INFO, worker_pid = pid, origin = %origin, "{message}"),
                4 => tracing::event!(target: $target, Level::DEBUG, worker_pid = pid, origin = %origin, "{message}"),
                _ => tracing::event!(target: $target, Level::TRACE, worker_pid = pid, origin = %origin, "{message}"),
            }
        };
    }
    match origin.as_str() {
        "osiiso::guest" => forward!("osiiso::guest"),
        "osiiso::http" => forward!("osiiso::http"),
        o if o.starts_with("wasmtime_wasi_http") => forward!("wasmtime_wasi_http"),
        o if o.starts_with("wasmtime") => forward!("wasmtime"),
        _ => forward!("osiiso_host::worker"),
    }
}

/// The most verbose level any subscriber of the parent wants, as a worker argument.
pub(crate) fn parent_level() -> Option<Level> {
    tracing::level_filters::LevelFilter::current().into_level()
}
