//! Palisade's policy language: parse, validate, import and compile.
//!
//! Everything that can go wrong with user input goes wrong here, with a
//! position and a hint, before any kernel object exists. The output is a
//! [`plan::Plan`] that `palisade-enforce` applies.

pub mod caps_names;
pub mod decode;
pub mod diag;
pub mod emit;
pub mod explain;
pub mod kubearmor;
pub mod load;
pub mod model;
pub mod parse;
pub mod plan;
pub mod seccomp_profile;
pub mod yaml;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load_file, load_str, LoadOptions, Loaded, LoadedPolicy};
pub use model::Policy;
pub use plan::{compile, Layer, Plan};

impl LoadedPolicy {
    pub fn compile(&self) -> Result<Plan, plan::PlanError> {
        plan::compile(&self.policy, &self.profiles)
    }
}
