//! The `palisade` command line and (later) the containerd shim. Thin: parsing
//! arguments and printing; the work is in `palisade-policy` and `palisade-enforce`.

pub mod cli;
