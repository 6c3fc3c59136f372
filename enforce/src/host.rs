//! What this host can enforce, decided once, in one place (`palisade check`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use landlock::{Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, ABI};
use palisade_policy::Layer;
use serde::{Deserialize, Serialize};

use crate::bpf;

const MIN_LANDLOCK_ABI: i32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
        name: "cgroup v2".into(),
        available: cgroup2.is_some(),
        detail: cgroup2
            .as_ref()
            .map(|p| format!("mounted at {}", p.display()))
            .unwrap_or_else(|| "not mounted".into()),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    features.push(Feature {
        name: "BTF".into(),
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
        name: "BPF LSM".into(),
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
            &["pal_exec_guard", "pal_sys_exit"][..],
        ),
    ] {
        let r = bpf::probe_programs(programs);
        features.push(Feature {
            name: name.into(),
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
        name: "Landlock".into(),
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
        name: "seccomp".into(),
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

/// What a probe found, for this boot of this kernel and these BPF objects.
#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    boot_id: String,
    kernel: String,
    objects: String,
    host: HostLayers,
}

/// Under the state directory, beside (not among) the workloads' status files.
pub const CACHE_FILE: &str = "cache/host-layers.json";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Identifies the BPF objects this binary loads: a new build probes again.
fn objects_digest() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(bpf::OBJECT);
    h.update(bpf::PROBE_LSM);
    format!("{:x}", h.finalize())
}

/// Probing loads a dozen test programs (tens of milliseconds); a node's
/// kernel does not change until it reboots, so a shim per container reuses
/// the answer recorded for this boot, kernel and build under `dir`. Anything
/// unreadable, stale or mismatched is probed again and rewritten. A wrong
/// "available" can only make an attach fail, which stops the start.
pub fn detect_cached(dir: &Path) -> HostLayers {
    let path = dir.join(CACHE_FILE);
    let (boot, kernel, objects) = (boot_id(), kernel_release(), objects_digest());
    if let Some(cached) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<CachedProbe>(&b).ok())
    {
        if !boot.is_empty()
            && cached.boot_id == boot
            && cached.kernel == kernel
            && cached.objects == objects
        {
            return cached.host;
        }
    }
    let host = detect();
    let record = CachedProbe {
        boot_id: boot,
        kernel,
        objects,
        host,
    };
    if let Err(e) = write_atomically(&path, &record) {
        tracing::debug!(error = %e, path = %path.display(), "host probe not cached");
    }
    record.host
}

fn write_atomically(path: &Path, record: &CachedProbe) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(record).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_reused_only_for_the_same_boot_kernel_and_build() {
        // The probe's refused loads are expected; keep libbpf's words off the test output.
        bpf::route_libbpf_logs();
        let dir = std::env::temp_dir().join(format!("pal-hostcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fresh = detect_cached(&dir);
        let path = dir.join(CACHE_FILE);
        let mut record: CachedProbe =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(record.boot_id, boot_id());
        assert_eq!(record.host.layers, fresh.layers);
        // A record from another boot is not trusted: the probe runs again.
        record.boot_id = "another-boot".into();
        record.host.layers.clear();
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(detect_cached(&dir).layers, fresh.layers);
        // The same boot: the record is used as it is.
        let mut record: CachedProbe =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        record.host.features.push(Feature {
            name: "marker".into(),
            available: true,
            detail: String::new(),
        });
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert!(detect_cached(&dir)
            .features
            .iter()
            .any(|f| f.name == "marker"));
        // Garbage is probed over.
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(detect_cached(&dir).layers, fresh.layers);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
