//! What this host can enforce, decided once, in one place (`palisade check`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use landlock::{Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, ABI};
use palisade_policy::Layer;
use serde::Serialize;

use crate::bpf;

const MIN_LANDLOCK_ABI: i32 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostLayers {
    pub features: Vec<Feature>,
    pub layers: BTreeSet<Layer>,
    pub cgroup2: Option<PathBuf>,
    pub landlock_abi: Option<i32>,
}

impl HostLayers {
    pub fn has(&self, layer: Layer) -> bool {
        self.layers.contains(&layer)
    }

    /// Why a layer is missing, for error messages.
    pub fn why_missing(&self, layer: Layer) -> String {
        let name = match layer {
            Layer::BpfLsm => "BPF LSM",
            Layer::Landlock => "Landlock",
            Layer::CgroupSock => "cgroup socket programs",
            Layer::Seccomp => "seccomp",
            Layer::ExecGuard => "tp_btf exec guard",
            Layer::Caps => "capabilities",
        };
        self.features
            .iter()
            .find(|f| f.name == name)
            .map(|f| format!("{}: {}", f.name, f.detail))
            .unwrap_or_else(|| format!("{name}: unavailable"))
    }

    /// At least one layer that confines a process.
    pub fn can_enforce(&self) -> bool {
        self.cgroup2.is_some()
            && [
                Layer::BpfLsm,
                Layer::Landlock,
                Layer::Seccomp,
                Layer::CgroupSock,
            ]
            .iter()
            .any(|l| self.has(*l))
    }
}

pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

fn landlock_abi() -> Option<i32> {
    // Highest first: the crate refuses a version the kernel lacks under HardRequirement.
    let known = [
        (ABI::V6, 6),
        (ABI::V5, 5),
        (ABI::V4, 4),
        (ABI::V3, 3),
        (ABI::V2, 2),
        (ABI::V1, 1),
    ];
    known.into_iter().find_map(|(abi, n)| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .ok()?
            .create()
            .ok()
            .map(|_| n)
    })
}

fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

/// Probes the kernel. Loading test programs takes a few milliseconds.
pub fn detect() -> HostLayers {
    let mut features = Vec::new();
    let mut layers = BTreeSet::from([Layer::Caps]);
    let cgroup2 = cgroup2_mount();
    features.push(Feature {
        name: "cgroup v2",
        available: cgroup2.is_some(),
        detail: cgroup2
            .as_ref()
            .map(|p| format!("mounted at {}", p.display()))
            .unwrap_or_else(|| "not mounted".into()),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    features.push(Feature {
        name: "BTF",
        available: btf,
        detail: if btf {
            "/sys/kernel/btf/vmlinux".into()
        } else {
            "missing: CO-RE programs cannot relocate".into()
        },
    });
    let lsm_list = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let lsm = bpf::probe_lsm_cgroup();
    features.push(Feature {
        name: "BPF LSM",
        available: lsm.is_ok(),
        detail: match &lsm {
            Ok(()) => "per-cgroup LSM programs load".into(),
            Err(e) => format!(
                "unavailable: {e}{}",
                if lsm_list.is_empty() {
                    String::new()
                } else {
                    format!(" (active LSMs: {})", lsm_list.trim())
                }
            ),
        },
    });
    if lsm.is_ok() {
        layers.insert(Layer::BpfLsm);
    }
    for (name, layer, programs) in [
        (
            "cgroup socket programs",
            Layer::CgroupSock,
            &[
                "pal_connect4",
                "pal_connect6",
                "pal_sendmsg4",
                "pal_sendmsg6",
                "pal_sock_create",
            ][..],
        ),
        (
            "tp_btf exec guard",
            Layer::ExecGuard,
            &["pal_exec_guard", "pal_sys_enter", "pal_sys_exit"][..],
        ),
    ] {
        let r = bpf::probe_programs(programs);
        features.push(Feature {
            name,
            available: r.is_ok(),
            detail: match &r {
                Ok(()) => "programs load".into(),
                Err(e) => format!("unavailable: {e}"),
            },
        });
        if r.is_ok() {
            layers.insert(layer);
        }
    }
    let abi = landlock_abi();
    // Write rules include truncate (ABI 3): an older Landlock cannot carry them as written.
    let landlock_usable = abi.is_some_and(|n| n >= MIN_LANDLOCK_ABI);
    features.push(Feature {
        name: "Landlock",
        available: landlock_usable,
        detail: match abi {
            Some(n) if n >= MIN_LANDLOCK_ABI => format!("ABI {n} or later"),
            Some(n) => format!(
                "unavailable: ABI {n}; Palisade needs ABI {MIN_LANDLOCK_ABI} (kernel 6.2) for truncate rights"
            ),
            None => "unavailable: not enabled in this kernel".into(),
        },
    });
    if landlock_usable {
        layers.insert(Layer::Landlock);
    }
    let seccomp = seccomp_available();
    features.push(Feature {
        name: "seccomp",
        available: seccomp,
        detail: if seccomp {
            "filter mode".into()
        } else {
            "unavailable".into()
        },
    });
    if seccomp {
        layers.insert(Layer::Seccomp);
    }
    if cgroup2.is_none() {
        // Every BPF layer hangs off the workload's v2 cgroup.
        layers.remove(&Layer::CgroupSock);
        layers.remove(&Layer::ExecGuard);
        layers.remove(&Layer::BpfLsm);
    }
    HostLayers {
        features,
        layers,
        cgroup2,
        landlock_abi: abi,
    }
}
