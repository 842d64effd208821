//! Task results (docs/queues.md §9.1) and their documented JSON form.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::failure::{CapturedOutput, TaskFailure};
use crate::json::Json;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Admitted, not started (queued or scheduled).
    Pending,
    /// An attempt is running.
    Running,
    /// Between a failed attempt and the next one.
    Retrying,
    /// Final: produced a value.
    Succeeded,
    /// Final: failed after its retries.
    Failed,
    /// Final: cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Whether this is a final status.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The final, immutable record of one task: its status, its value or its failure, its
/// attempts, times and captured output. [`Handle::wait`](super::Handle::wait),
/// [`Queue::results`](super::Queue::results) and [`RunSummary`](super::RunSummary) hand it
/// out; serialized, it is the CLI's result row (README.md, "The result object").
///
/// ```
/// use osiiso_host::{FailureKind, Host, ThreadQueue};
/// use osiiso_host::queue::{TaskOptions, TaskStatus};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let plugin = Host::new()?.load(echo_wasm)?;
/// let queue = ThreadQueue::builder().build()?;
/// let greet = plugin.task("greet")?.with_input(json!({"name": "Ada"}));
/// let greeted = queue.submit(greet, TaskOptions::new().metadata(json!({"row": 1})))?;
/// let refuse = plugin.task("fail")?.with_input(json!("invalid"));
/// let refused = queue.submit(refuse, TaskOptions::new().retries(3))?;
/// queue.run()?;
///
/// let result = greeted.wait();
/// assert!(result.ok());
/// assert_eq!((result.task.as_str(), result.attempts), ("echo/greet", 1));
/// assert_eq!(result.metadata, json!({"row": 1}));
/// #[derive(serde::Deserialize)]
/// struct Greeting { message: String }
/// let greeting: Greeting = result.value.as_ref().expect("a value").get()?;
/// assert_eq!(greeting.message, "Hello, Ada.");
///
/// let result = refused.wait();
/// assert_eq!(result.status, TaskStatus::Failed);
/// assert_eq!(result.error.as_ref().map(|e| e.kind), Some(FailureKind::InvalidInput));
/// assert_eq!(result.attempts, 1, "invalid input is not retried");
/// // One line of a JSON-lines results file.
/// let row = serde_json::to_string(&*result)?;
/// assert!(row.starts_with(r#"{"id":""#) && row.contains(r#""status":"failed""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// 32 lowercase hex digits.
    pub task_id: String,
    /// The options' name, else the task's own.
    pub name: String,
    /// Stable identity: `<plugin>/<task>`, or the native task's name.
    pub task: String,
    /// Priority it was submitted with.
    pub priority: i32,
    /// Whether it survived sparing aborts.
    pub must_complete: bool,
    /// Group label.
    pub group_id: Option<String>,
    /// Left out of run summaries.
    pub detached: bool,
    /// When it was scheduled to become ready (delay/run_at), if it was.
    pub scheduled_for: Option<Instant>,
    /// Admission time.
    pub created_at: Instant,
    /// Copied from the options.
    pub metadata: Value,
    /// Final status.
    pub status: TaskStatus,
    /// The value, on success: the JSON text the task returned, in its own key order.
    pub value: Option<Json>,
    /// The failure, on failure.
    pub error: Option<TaskFailure>,
    /// Attempts started.
    pub attempts: u32,
    /// Start of the first attempt.
    pub started_at: Option<Instant>,
    /// Record time.
    pub finished_at: Instant,
    /// Wall-clock start of the first attempt.
    pub started_wall: Option<SystemTime>,
    /// Wall-clock record time.
    pub finished_wall: SystemTime,
    /// `finished_at − started_at`, or zero if it never started.
    pub duration: Duration,
    /// `""` on success, the failure message, or why it was cancelled.
    pub message: String,
    /// Fuel consumed over all attempts (WASM tasks on a host that meters fuel, see
    /// [`HostBuilder::fuel_metering`](crate::HostBuilder::fuel_metering); else `None`).
    pub fuel_consumed: Option<u64>,
    /// Captured stdout of the final attempt.
    pub stdout: Option<CapturedOutput>,
    /// Captured stderr of the final attempt.
    pub stderr: Option<CapturedOutput>,
    /// The backend that ran it: `"thread"`, `"async"`, `"process"`, ... (its
    /// [`Backend::NAME`](super::backend::Backend::NAME)).
    pub backend: &'static str,
}

impl TaskResult {
    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.status == TaskStatus::Succeeded
    }

    /// Whether it was restored from a checkpoint instead of run: it succeeded without an
    /// attempt, which nothing else does.
    pub fn restored(&self) -> bool {
        self.status == TaskStatus::Succeeded && self.attempts == 0
    }

    /// The stable JSON object of the CLI contract (README.md, "The result object") as a value. Its keys are in
    /// `serde_json`'s map order; serialize the result itself (`serde_json::to_writer(w,
    /// &result)`) for the documented key order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The documented result object, keys in the documented order: `id`, `name`, `task`,
/// `status`, `value`, `error` (`kind`, `message`, `detail`), `message`, `attempts`,
/// `priority`, `group_id`, `metadata`, `started_at`, `finished_at`, `duration_ms`,
/// `fuel_consumed`, `stdout`, `stderr` (`text`, `truncated`, `total_bytes`).
impl serde::Serialize for TaskResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ResultRow {
            id: &self.task_id,
            name: &self.name,
            task: &self.task,
            status: self.status.as_str(),
            value: self.value.as_ref(),
            error: self.error.as_ref().map(|e| ErrorRow {
                kind: e.kind.as_str(),
                message: &e.message,
                detail: e.detail.as_deref(),
            }),
            message: &self.message,
            attempts: self.attempts,
            priority: self.priority,
            group_id: self.group_id.as_deref(),
            metadata: &self.metadata,
            started_at: self.started_wall.map(Rfc3339),
            finished_at: Rfc3339(self.finished_wall),
            duration_ms: millis(self.duration),
            fuel_consumed: self.fuel_consumed,
            stdout: self.stdout.as_ref(),
            stderr: self.stderr.as_ref(),
        }
        .serialize(serializer)
    }
}

#[derive(serde::Serialize)]
struct ResultRow<'a> {
    id: &'a str,
    name: &'a str,
    task: &'a str,
    status: &'static str,
    value: Option<&'a Json>,
    error: Option<ErrorRow<'a>>,
    message: &'a str,
    attempts: u32,
    priority: i32,
    group_id: Option<&'a str>,
    metadata: &'a Value,
    started_at: Option<Rfc3339>,
    finished_at: Rfc3339,
    duration_ms: f64,
    fuel_consumed: Option<u64>,
    stdout: Option<&'a CapturedOutput>,
    stderr: Option<&'a CapturedOutput>,
}

/// Milliseconds with microsecond precision, so that they print without float noise
/// (`0.308`, never `0.30753600000000003`): a whole number of microseconds over 1000 is the
/// double nearest that decimal, which prints as the decimal.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}

#[derive(serde::Serialize)]
struct ErrorRow<'a> {
    kind: &'static str,
    message: &'a str,
    detail: Option<&'a str>,
}

/// A wall-clock time that serializes as RFC 3339 without an intermediate string.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rfc3339(f, self.0)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Writes RFC 3339 with microseconds, in UTC (`2026-11-26T08:39:38.264603Z`), digit by
/// digit: a result row has two, and the formatting machinery would be a visible share of a
/// fan-out's time.
fn write_rfc3339(out: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (days, in_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, u64::from(month));
    put(8, 2, u64::from(day));
    put(11, 2, in_day / 3600);
    put(14, 2, in_day % 3600 / 60);
    put(17, 2, in_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    // Only ASCII digits and separators were written.
    out.write_str(std::str::from_utf8(&text).unwrap_or_default())
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{Rfc3339, millis};
    use std::time::{Duration, SystemTime};

    #[test]
    fn durations_print_without_float_noise() {
        let shown = |d: Duration| serde_json::to_string(&millis(d)).unwrap();
        assert_eq!(shown(Duration::from_nanos(307_536_001)), "307.536");
        assert_eq!(shown(Duration::from_nanos(307_536)), "0.307");
        assert_eq!(shown(Duration::from_micros(1)), "0.001");
        assert_eq!(shown(Duration::from_secs(2)), "2000.0");
        for micros in (0..2_000_000u64).step_by(7919) {
            let text = shown(Duration::from_micros(micros));
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 3, "{micros} µs shown as {text}");
        }
    }

    #[test]
    fn rfc3339_matches_the_calendar() {
        let at = |secs: u64, micros: u32| {
            Rfc3339(SystemTime::UNIX_EPOCH + Duration::new(secs, micros * 1000)).to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_795_681_178, 264_603), "2026-11-26T08:19:38.264603Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }
}
