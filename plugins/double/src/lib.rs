//! The trivial task of the side-by-side benchmark against osiiso: `x * 2`.

use osiiso_guest::{TaskError, task};

/// Doubles an integer.
#[task]
fn double(x: i64) -> Result<i64, TaskError> {
    x.checked_mul(2)
        .ok_or_else(|| TaskError::invalid_input("integer overflow"))
}
