//! Which layer carries each rule of a plan on this host; strict policies fail
//! when a rule has no carrier, best-effort ones list it as skipped.

use std::collections::BTreeMap;

use palisade_policy::model::Enforcement;
use palisade_policy::plan::{Layer, Plan};
use serde::Serialize;

use crate::host::HostLayers;
use crate::EnforceError;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Assignment {
    /// Layer name -> number of rules it carries.
    pub rules_per_layer: BTreeMap<&'static str, usize>,
    /// Rules no layer here can carry (best-effort only), with the layers they need.
    pub skipped: Vec<SkippedRule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedRule {
    pub rule_id: String,
    pub needs: Vec<&'static str>,
}

/// Every rule with the layers that could carry it.
fn rule_candidates(plan: &Plan) -> Vec<(String, Vec<Layer>)> {
    let mut out: Vec<(String, Vec<Layer>)> = plan
        .exec
        .rules
        .iter()
        .chain(&plan.file)
        .map(|r| (r.rule.id.clone(), r.layers.clone()))
        .collect();
    if let Some(e) = &plan.egress {
        out.extend(
            e.rules
                .iter()
                .map(|r| (r.rule.id.clone(), vec![Layer::CgroupSock])),
        );
        out.push(("network.egress.default".into(), vec![Layer::CgroupSock]));
    }
    if plan.raw_sockets == palisade_policy::model::DefaultAction::Deny {
        out.push(("network.rawSockets".into(), vec![Layer::CgroupSock]));
    }
    if plan.privileges.block_setuid {
        out.push((
            "privileges.blockSetuid".into(),
            plan.privileges.layers_setuid.clone(),
        ));
    }
    if !plan.privileges.cap_drop.is_empty() || !plan.privileges.cap_add.is_empty() {
        out.push(("privileges.capabilities".into(), vec![Layer::Caps]));
    }
    if plan.seccomp.profile.is_some() {
        out.push(("syscalls.profile".into(), vec![Layer::Seccomp]));
    }
    out.extend(
        plan.seccomp
            .deny
            .iter()
            .map(|r| (r.rule.id.clone(), vec![Layer::Seccomp])),
    );
    if plan.exec.anonymous == palisade_policy::model::DefaultAction::Deny {
        out.push((
            "process.anonymousExec".into(),
            vec![Layer::BpfLsm, Layer::ExecGuard],
        ));
    }
    if plan.exec.default == palisade_policy::model::DefaultAction::Deny {
        out.push((
            "process.default".into(),
            vec![Layer::BpfLsm, Layer::Landlock, Layer::ExecGuard],
        ));
    }
    out
}

pub fn assign(plan: &Plan, host: &HostLayers) -> Result<Assignment, EnforceError> {
    let mut a = Assignment::default();
    for (rule_id, candidates) in rule_candidates(plan) {
        let carriers = palisade_policy::plan::carriers(&candidates, &host.layers);
        if carriers.is_empty() {
            if plan.enforcement == Enforcement::Strict {
                return Err(EnforceError::NoLayerForRule {
                    policy: plan.name.clone(),
                    rule: rule_id,
                    needs: candidates
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    why: candidates
                        .iter()
                        .map(|l| host.why_missing(*l))
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            a.skipped.push(SkippedRule {
                rule_id,
                needs: candidates.iter().map(|l| l.name()).collect(),
            });
            continue;
        }
        for l in carriers {
            *a.rules_per_layer.entry(l.name()).or_default() += 1;
        }
    }
    Ok(a)
}
