//! The `palisade` command line and the `containerd-shim-palisade-v2` shim.
//! Thin: argument parsing, the Task service and the runtime helper; the work
//! is in `palisade-policy` and `palisade-enforce`.

pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod image_labels;
pub mod policy_source;
pub mod ring_wait;
pub mod runtime;
pub mod service;
pub mod stats;
