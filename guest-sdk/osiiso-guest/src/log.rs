//! Log lines attributed to the running task, sent to the host's `log` service.
//!
//! ```ignore
//! osiiso_guest::log::info!("processed {} rows", rows);
//! ```

use crate::bindings::osiiso::task::host::{self, Level};

#[doc(hidden)]
pub fn __log(level: u8, message: &str) {
    if !cfg!(target_family = "wasm") {
        return;
    }
    let level = match level {
        0 => Level::Trace,
        1 => Level::Debug,
        2 => Level::Info,
        3 => Level::Warn,
        _ => Level::Error,
    };
    host::log(level, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::__log($level, &::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_trace { ($($arg:tt)+) => { $crate::__osiiso_log!(0, $($arg)+) }; }
#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_debug { ($($arg:tt)+) => { $crate::__osiiso_log!(1, $($arg)+) }; }
#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_info { ($($arg:tt)+) => { $crate::__osiiso_log!(2, $($arg)+) }; }
#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_warn { ($($arg:tt)+) => { $crate::__osiiso_log!(3, $($arg)+) }; }
#[doc(hidden)]
#[macro_export]
macro_rules! __osiiso_error { ($($arg:tt)+) => { $crate::__osiiso_log!(4, $($arg)+) }; }

/// Logs at debug level: `debug!("{x}")`, formatted like `format!`.
#[doc(inline)]
pub use crate::__osiiso_debug as debug;
/// Logs at error level: `error!("{x}")`, formatted like `format!`.
#[doc(inline)]
pub use crate::__osiiso_error as error;
/// Logs at info level: `info!("{x}")`, formatted like `format!`.
#[doc(inline)]
pub use crate::__osiiso_info as info;
/// Logs at trace level: `trace!("{x}")`, formatted like `format!`.
#[doc(inline)]
pub use crate::__osiiso_trace as trace;
/// Logs at warn level: `warn!("{x}")`, formatted like `format!`.
#[doc(inline)]
pub use crate::__osiiso_warn as warn;
