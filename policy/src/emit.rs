//! Printing a policy as YAML (`policy convert`); the printed form parses back to the same policy.

use crate::model::Policy;

#[derive(Debug, thiserror::Error)]
#[error("cannot print policy `{name}` as YAML: {reason}")]
pub struct EmitError {
    pub name: String,
    pub reason: String,
}

pub fn to_yaml(policy: &Policy) -> Result<String, EmitError> {
    serde_saphyr::to_string(policy).map_err(|e| EmitError {
        name: policy.metadata.name.clone(),
        reason: e.to_string(),
    })
}
