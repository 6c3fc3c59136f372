//! Palisade's kernel-facing engine. It applies compiled plans (`palisade-policy`)
//! and never parses YAML.
//!
//! The moments of a confined workload's life map to modules: `host` decides
//! what this kernel can enforce, `cgroup` places the workload, `bpf` attaches
//! and pins the cgroup and tracing programs, `landlock_layer`, `seccomp_layer`
//! and `caps_layer` confine the process right before execve (`confine`),
//! `events` turns kernel reports into JSON lines, and `workload` ties them.

pub mod bpf;
pub mod caps_layer;
pub mod cgroup;
pub mod confine;
pub mod error;
pub mod events;
pub mod host;
pub mod landlock_layer;
pub mod layers;
pub mod seccomp_layer;
pub mod workload;

pub use error::EnforceError;
