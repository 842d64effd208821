//! Task and queue options, their validation and their parsing from text and JSON
//! (docs/queues.md §2).

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::error::{Error, InvalidOption};
use crate::units::{parse_duration, seconds_to_duration};

/// Options of one task. An immutable value: setters return changed copies.
///
/// ```
/// use osiiso_host::queue::TaskOptions;
/// use std::time::Duration;
/// let opts = TaskOptions::new().retries(3).timeout(Duration::from_secs(5)).priority(1);
/// assert_eq!(opts.retries, 3);
/// assert_eq!(TaskOptions::new().priority, 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    /// Lower runs first (default 3).
    pub priority: i32,
    /// Survives sparing aborts (fail-first, run timeout with `complete_priority`).
    pub must_complete: bool,
    /// Limit for each attempt.
    pub timeout: Option<Duration>,
    /// Extra attempts after the first, for retryable failures.
    pub retries: u32,
    /// Pause before the first retry.
    pub retry_delay: Duration,
    /// Multiplies the pause after each retry.
    pub backoff: f64,
    /// Earliest start, counted from admission.
    pub delay: Option<Duration>,
    /// Earliest wall-clock start.
    pub run_at: Option<SystemTime>,
    /// Overrides the derived task name.
    pub name: Option<String>,
    /// Group label.
    pub group_id: Option<String>,
    /// Runs and is waited for, but is left out of run summaries.
    pub detached: bool,
    /// Copied unchanged to the handle and the result.
    pub metadata: Value,
    /// Which of the options a plugin may suggest were chosen by the caller.
    chosen: Chosen,
}

/// The options a task may suggest (`retries`, `timeout`) that the caller chose: through their
/// setters or a `--jobs` line. A suggestion fills only an option nobody chose that is still at
/// its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Chosen {
    retries: bool,
    timeout: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            priority: 3,
            must_complete: false,
            timeout: None,
            retries: 0,
            retry_delay: Duration::ZERO,
            backoff: 1.0,
            delay: None,
            run_at: None,
            name: None,
            group_id: None,
            detached: false,
            metadata: Value::Null,
            chosen: Chosen::default(),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty => $value:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$field = $value;
                self
            }
        )*
    };
}

impl TaskOptions {
    /// The defaults: priority 3, no timeout, no retries — unless the task suggests retries or
    /// a timeout (a plugin's `#[task(retries = 3, timeout = "5s")]`, shown by
    /// `osiiso-host list`): a suggestion applies when the task is submitted with an option
    /// nobody chose. Choose one to override it, `retries(0)` included.
    ///
    /// ```
    /// use osiiso_host::queue::TaskOptions;
    /// use std::time::Duration;
    /// // A task suggesting 3 retries and a 5 s timeout, submitted with these options, gets
    /// // its 3 retries (nobody chose any) and the 1 s timeout chosen here.
    /// let chosen = TaskOptions::new().timeout(Duration::from_secs(1));
    /// let applied = chosen.with_suggestions(Some(3), Some(Duration::from_secs(5)));
    /// assert_eq!(applied.retries, 3);
    /// assert_eq!(applied.timeout, Some(Duration::from_secs(1)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the per-attempt timeout (chosen: a task's suggested timeout no longer applies).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.chosen.timeout = true;
        self
    }

    /// Sets the number of retries (chosen: a task's suggested retries no longer apply).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self.chosen.retries = true;
        self
    }

    /// Fills the options a task suggests that the caller left alone: `retries` when not chosen
    /// and 0, `timeout` when not chosen and none. The queues call this when they admit a WASM
    /// task, with the task's [`TaskInfo`](crate::TaskInfo) suggestions.
    pub fn with_suggestions(mut self, retries: Option<u32>, timeout: Option<Duration>) -> Self {
        if let Some(retries) = retries
            && !self.chosen.retries
            && self.retries == 0
        {
            self.retries = retries;
        }
        if let Some(timeout) = timeout
            && !self.chosen.timeout
            && self.timeout.is_none()
        {
            self.timeout = Some(timeout);
        }
        self
    }

    setters! {
        /// Sets the priority (lower runs first).
        priority: i32 => priority;
        /// Marks the task as surviving sparing aborts.
        must_complete: bool => must_complete;
        /// Sets the pause before the first retry.
        retry_delay: Duration => retry_delay;
        /// Sets the backoff multiplier.
        backoff: f64 => backoff;
        /// Delays the start by this much from admission.
        delay: Duration => Some(delay);
        /// Starts no earlier than this wall-clock time.
        run_at: SystemTime => Some(run_at);
        /// Names the task.
        name: impl Into<String> => Some(name.into());
        /// Puts the task in a group.
        group_id: impl Into<String> => Some(group_id.into());
        /// Leaves the task out of run summaries.
        detached: bool => detached;
        /// Attaches metadata.
        metadata: Value => metadata;
    }

    /// Checks the options in the fixed order of docs/queues.md §2.1.
    pub fn validate(&self) -> Result<(), Error> {
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid("timeout", "timeout must be > 0"));
        }
        if self.backoff.is_nan() || self.backoff <= 0.0 {
            return Err(Error::invalid("backoff", "backoff must be > 0"));
        }
        if self.backoff.is_infinite() {
            return Err(Error::invalid("backoff", "backoff must be finite"));
        }
        if self.delay.is_some() && self.run_at.is_some() {
            return Err(Error::invalid(
                "delay",
                "delay and run_at are mutually exclusive",
            ));
        }
        Ok(())
    }

    /// The pause before retry `k` (1-based): `retry_delay × backoff^(k−1)`, saturating.
    pub fn retry_pause(&self, k: u32) -> Duration {
        if self.retry_delay.is_zero() {
            return Duration::ZERO;
        }
        let factor = self
            .backoff
            .powi(k.saturating_sub(1).min(i32::MAX as u32) as i32);
        let seconds = self.retry_delay.as_secs_f64() * factor;
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }

    /// Applies the per-task options of a JSON object (a `--jobs` line) on top of `self`.
    /// Durations are seconds as numbers or strings like `"250ms"`. Unknown keys are rejected
    /// with `Unknown task option(s): ...`; bad values name the option.
    pub fn with_json_overrides(&self, object: &Map<String, Value>) -> Result<Self, Error> {
        const KNOWN: &[&str] = &[
            "priority",
            "retries",
            "retry_delay",
            "backoff",
            "timeout",
            "must_complete",
            "delay",
            "name",
            "group_id",
            "metadata",
            "detached",
        ];
        let mut unknown: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN.contains(k))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            // The keys come from whoever wrote the jobs line: a few, escaped and cut short.
            let mut shown: Vec<String> = unknown
                .iter()
                .take(SHOWN_UNKNOWN)
                .map(|key| crate::text::for_display(key, SHOWN_KEY_BYTES))
                .collect();
            if unknown.len() > SHOWN_UNKNOWN {
                shown.push(format!("… ({} in all)", unknown.len()));
            }
            return Err(Error::invalid(
                "options",
                format!("Unknown task option(s): {}", shown.join(", ")),
            ));
        }
        let mut options = self.clone();
        for (key, value) in object {
            let bad = |expected: &str| {
                Error::InvalidOption(InvalidOption::new(
                    key.as_str(),
                    format!("{key} must be {expected}"),
                ))
            };
            match key.as_str() {
                "priority" => {
                    options.priority = value
                        .as_i64()
                        .and_then(|v| i32::try_from(v).ok())
                        .ok_or_else(|| bad("an integer"))?;
                }
                "retries" => {
                    let n = value.as_i64().ok_or_else(|| bad("an integer"))?;
                    if n < 0 {
                        return Err(Error::invalid("retries", "retries must be >= 0"));
                    }
                    options.retries = u32::try_from(n).map_err(|_| bad("at most 4294967295"))?;
                    options.chosen.retries = true;
                }
                "retry_delay" => options.retry_delay = json_duration(key, value)?,
                "backoff" => options.backoff = value.as_f64().ok_or_else(|| bad("a number"))?,
                "timeout" => {
                    options.timeout = json_optional_duration(key, value)?;
                    options.chosen.timeout = true;
                }
                "delay" => options.delay = json_optional_duration(key, value)?,
                "must_complete" => {
                    options.must_complete = value.as_bool().ok_or_else(|| bad("true or false"))?
                }
                "detached" => {
                    options.detached = value.as_bool().ok_or_else(|| bad("true or false"))?
                }
                "name" => {
                    options.name = json_optional_string(value).ok_or_else(|| bad("a string"))?
                }
                "group_id" => {
                    options.group_id = json_optional_string(value).ok_or_else(|| bad("a string"))?
                }
                "metadata" => options.metadata = value.clone(),
                _ => unreachable!("checked against KNOWN"),
            }
        }
        options.validate()?;
        Ok(options)
    }
}

fn json_optional_string(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    }
}

fn json_optional_duration(key: &str, value: &Value) -> Result<Option<Duration>, Error> {
    match value {
        Value::Null => Ok(None),
        other => json_duration(key, other).map(Some),
    }
}

/// A duration from JSON: seconds as a number, or a string like `"250ms"`.
fn json_duration(key: &str, value: &Value) -> Result<Duration, Error> {
    let invalid = |message: String| Error::InvalidOption(InvalidOption::new(key, message));
    let negative = || invalid(format!("{key} must be >= 0"));
    match value {
        Value::Number(n) => {
            let seconds = n.as_f64().unwrap_or(f64::NAN);
            seconds_to_duration(seconds).map_err(|_| negative())
        }
        Value::String(s) => {
            if s.trim_start().starts_with('-') {
                return Err(negative());
            }
            parse_duration(s).map_err(|e| invalid(format!("{key}: {e}")))
        }
        _ => Err(invalid(format!(
            "{key} must be a duration (seconds, or a string like \"250ms\")"
        ))),
    }
}

/// How many workers a queue runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// Scaled with the work: `max(floor, min(limit, ready + active))`.
    #[default]
    Auto,
    /// Exactly this many.
    Fixed(usize),
}

/// Whether `run()` drains and returns, or runs until shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Drain, then return.
    #[default]
    Finite,
    /// Run until a shutdown requested elsewhere.
    Infinite,
}

/// What a final failure does to the rest of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPolicy {
    /// Run everything and collect failures.
    #[default]
    Continue,
    /// The first final failure halts the queue and cancels what is not `must_complete`.
    FailFirst,
}

/// What a run timeout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExit {
    /// Cancel what is not `must_complete`; let the rest finish.
    #[default]
    CompletePriority,
    /// Cancel everything.
    Cancel,
}

/// What a queue keeps of the results it records (docs/queues.md §9.3).
///
/// A handle always keeps its own task's result, whatever the retention: this only decides
/// what the *queue* keeps for [`results()`](super::Queue::results) and run summaries.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{Mode, Retention, TaskOptions};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// // A long-running service: summaries count, and a finished task whose handle is dropped
/// // leaves nothing behind.
/// let queue = ThreadQueue::builder().retention(Retention::Counts).build()?;
/// for i in 0..10 {
///     drop(queue.submit(echo.with_input(json!(i)), TaskOptions::new())?);
/// }
/// let summary = queue.run()?;
/// assert_eq!((summary.total_submitted, summary.succeeded), (10, 10));
/// assert!(summary.results.is_empty() && queue.results().is_empty());
/// assert_eq!(queue.stats().live_tasks, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Every result since construction, `reset()` or `clear_results()`: `results()` lists
    /// them and each run summary holds its own (the osiiso model). Memory grows with every
    /// task recorded.
    #[default]
    All,
    /// Counts only: `results()` stays empty, and a run summary counts its results and holds
    /// only its first few failed ones (for its display). What the queue keeps no longer grows
    /// with the tasks recorded, so runs of any length stay flat.
    Counts,
}

/// The most unknown option names an error lists, and the most bytes of each.
const SHOWN_UNKNOWN: usize = 8;
const SHOWN_KEY_BYTES: usize = 64;

macro_rules! text_enum {
    ($ty:ident, $option:literal, $a:literal => $va:ident, $b:literal => $vb:ident) => {
        impl std::str::FromStr for $ty {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self, Error> {
                match text {
                    $a => Ok(Self::$va),
                    $b => Ok(Self::$vb),
                    other => Err(Error::invalid(
                        $option,
                        format!(
                            concat!(
                                "unknown ",
                                $option,
                                " value '{}' (expected ",
                                $a,
                                " or ",
                                $b,
                                ")"
                            ),
                            other
                        ),
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    Self::$va => $a,
                    Self::$vb => $b,
                })
            }
        }
    };
}

text_enum!(Mode, "mode", "finite" => Finite, "infinite" => Infinite);
text_enum!(FailPolicy, "fail_policy", "continue" => Continue, "fail_first" => FailFirst);
text_enum!(OnExit, "on_exit", "complete_priority" => CompletePriority, "cancel" => Cancel);
text_enum!(Retention, "retention", "all" => All, "counts" => Counts);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_options_are_named_bounded_and_escaped() {
        let mut object = Map::new();
        for i in 0..1000 {
            object.insert(format!("{}\x1b[2J{i:04}", "k".repeat(10_000)), Value::Null);
        }
        let Err(Error::InvalidOption(invalid)) = TaskOptions::new().with_json_overrides(&object)
        else {
            panic!("unknown options are refused");
        };
        assert_eq!(invalid.option(), "options");
        let message = invalid.to_string();
        assert!(message.len() < 2_000, "{} bytes", message.len());
        assert!(!message.contains('\x1b'), "{message}");
        assert!(message.ends_with("… (1000 in all)"), "{message}");
    }
}
