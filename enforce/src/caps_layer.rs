//! Capabilities: the workload keeps `effective_caps`; everything else leaves
//! the bounding, permitted, effective, inheritable and ambient sets, so not
//! even a root exec can bring it back.

use std::collections::BTreeSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use palisade_policy::plan::Plan;

use crate::EnforceError;

pub struct PreparedCaps {
    pub keep: CapsHashSet,
}

pub fn current_permitted() -> BTreeSet<String> {
    caps::read(None, CapSet::Permitted)
        .map(|s| s.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default()
}

pub fn prepare(plan: &Plan, base: &BTreeSet<String>) -> Option<PreparedCaps> {
    if plan.privileges.cap_drop.is_empty() && plan.privileges.cap_add.is_empty() {
        return None;
    }
    let keep = plan
        .effective_caps(base)
        .iter()
        .filter_map(|c| Capability::from_str(c).ok())
        .collect();
    Some(PreparedCaps { keep })
}

/// Bounding set first, while CAP_SETPCAP is still held.
pub fn drop_bounding(p: &PreparedCaps) -> Result<(), EnforceError> {
    let holds_setpcap =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
    if !holds_setpcap {
        return Ok(());
    }
    for cap in caps::all() {
        if !p.keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                EnforceError::Caps(format!("drop {cap} from the bounding set: {e}"))
            })?;
        }
    }
    Ok(())
}

pub fn apply_sets(p: &PreparedCaps) -> Result<(), EnforceError> {
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| EnforceError::Caps(format!("read permitted set: {e}")))?;
    let keep: CapsHashSet = p.keep.intersection(&permitted).copied().collect();
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| EnforceError::Caps(format!("clear ambient: {e}")))?;
    for (set, name) in [
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::set(None, set, &keep).map_err(|e| EnforceError::Caps(format!("set {name}: {e}")))?;
    }
    // Non-root workloads keep what the policy grants across execve only through ambient.
    if nix::unistd::geteuid().as_raw() != 0 {
        for cap in &keep {
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
    }
    Ok(())
}
