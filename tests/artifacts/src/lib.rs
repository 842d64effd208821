//! Paths of the example plugins and test guests, compiled for `wasm32-wasip2` by this crate's
//! build script. Nothing here is committed as a binary: the guests are built from source.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
