//! Paths of the example plugins written in C and Python, built from source by this crate's
//! build script (see `build.rs`): nothing here is committed as a binary.
//!
//! The build needs clang and wasi-libc (Debian: `clang lld wasi-libc libclang-rt-dev-wasm32`)
//! and `componentize-py` (PyPI); `.ci/run` installs them. The components are written to
//! `<target>/foreign-guests/`, where `tests/all/foreign_guests.rs` finds them.

include!(concat!(env!("OUT_DIR"), "/paths.rs"));
