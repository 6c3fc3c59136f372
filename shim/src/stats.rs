//! Task stats: cgroup metrics in the form containerd expects
//! (`io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts, v2 otherwise).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::{cgroups, cgroups_v2};

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn key_u64(p: &Path, key: &str) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

fn unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Metrics of the cgroup at `relative` (the spec's cgroupsPath).
pub fn metrics(relative: &str) -> Result<Any> {
    let rel = relative.trim_start_matches('/');
    let any = if unified() {
        let dir = PathBuf::from("/sys/fs/cgroup").join(rel);
        let pids = cgroups_v2::metrics::PidsStat {
            current: read_u64(&dir.join("pids.current")),
            limit: read_u64(&dir.join("pids.max")),
            ..Default::default()
        };
        let cpu = cgroups_v2::metrics::CPUStat {
            usage_usec: key_u64(&dir.join("cpu.stat"), "usage_usec"),
            user_usec: key_u64(&dir.join("cpu.stat"), "user_usec"),
            system_usec: key_u64(&dir.join("cpu.stat"), "system_usec"),
            ..Default::default()
        };
        let memory = cgroups_v2::metrics::MemoryStat {
            usage: read_u64(&dir.join("memory.current")),
            usage_limit: read_u64(&dir.join("memory.max")),
            ..Default::default()
        };
        let m = cgroups_v2::metrics::Metrics {
            pids: MessageField::some(pids),
            cpu: MessageField::some(cpu),
            memory: MessageField::some(memory),
            ..Default::default()
        };
        containerd_shim::util::convert_to_any(Box::new(m))
    } else {
        let v1 = |ctrl: &str| PathBuf::from("/sys/fs/cgroup").join(ctrl).join(rel);
        let pids = cgroups::metrics::PidsStat {
            current: read_u64(&v1("pids").join("pids.current")),
            limit: read_u64(&v1("pids").join("pids.max")),
            ..Default::default()
        };
        let usage = cgroups::metrics::CPUUsage {
            total: read_u64(&v1("cpuacct").join("cpuacct.usage")),
            ..Default::default()
        };
        let cpu = cgroups::metrics::CPUStat {
            usage: MessageField::some(usage),
            ..Default::default()
        };
        let mem_entry = cgroups::metrics::MemoryEntry {
            usage: read_u64(&v1("memory").join("memory.usage_in_bytes")),
            limit: read_u64(&v1("memory").join("memory.limit_in_bytes")),
            max: read_u64(&v1("memory").join("memory.max_usage_in_bytes")),
            ..Default::default()
        };
        let memory = cgroups::metrics::MemoryStat {
            usage: MessageField::some(mem_entry),
            ..Default::default()
        };
        let m = cgroups::metrics::Metrics {
            pids: MessageField::some(pids),
            cpu: MessageField::some(cpu),
            memory: MessageField::some(memory),
            ..Default::default()
        };
        containerd_shim::util::convert_to_any(Box::new(m))
    };
    any.context("encode metrics")
}

/// `ctr task update` / kubelet resizes: the LinuxResources containerd sends (JSON),
/// written to the container's cgroup. Fields Palisade does not apply are an error.
pub fn update(relative: &str, resources_json: &[u8]) -> Result<()> {
    let r: serde_json::Value =
        serde_json::from_slice(resources_json).context("parse LinuxResources")?;
    let known = ["memory", "cpu", "pids", "devices"];
    if let Some(obj) = r.as_object() {
        if let Some(k) = obj
            .keys()
            .find(|k| !known.contains(&k.as_str()) && !obj[*k].is_null())
        {
            anyhow::bail!("updating `{k}` is not supported");
        }
    }
    let rel = relative.trim_start_matches('/');
    let write = |path: PathBuf, value: String| -> Result<()> {
        std::fs::write(&path, &value)
            .with_context(|| format!("write {value} to {}", path.display()))
    };
    let mem = r["memory"]["limit"].as_i64();
    let shares = r["cpu"]["shares"].as_u64();
    let quota = r["cpu"]["quota"].as_i64();
    let period = r["cpu"]["period"].as_u64();
    let pids = r["pids"]["limit"].as_i64();
    if unified() {
        let dir = PathBuf::from("/sys/fs/cgroup").join(rel);
        if let Some(m) = mem {
            write(
                dir.join("memory.max"),
                if m < 0 { "max".into() } else { m.to_string() },
            )?;
        }
        if let Some(s) = shares {
            // The same conversion runc uses from shares (2-262144) to weight (1-10000).
            let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(dir.join("cpu.weight"), weight.to_string())?;
        }
        if quota.is_some() || period.is_some() {
            let q = quota
                .filter(|q| *q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            write(
                dir.join("cpu.max"),
                format!("{q} {}", period.unwrap_or(100_000)),
            )?;
        }
        if let Some(p) = pids {
            write(
                dir.join("pids.max"),
                if p <= 0 { "max".into() } else { p.to_string() },
            )?;
        }
    } else {
        let v1 = |ctrl: &str, file: &str| {
            PathBuf::from("/sys/fs/cgroup")
                .join(ctrl)
                .join(rel)
                .join(file)
        };
        if let Some(m) = mem {
            write(v1("memory", "memory.limit_in_bytes"), m.to_string())?;
        }
        if let Some(s) = shares {
            write(v1("cpu", "cpu.shares"), s.to_string())?;
        }
        if let Some(p) = period {
            write(v1("cpu", "cpu.cfs_period_us"), p.to_string())?;
        }
        if let Some(q) = quota {
            write(v1("cpu", "cpu.cfs_quota_us"), q.to_string())?;
        }
        if let Some(p) = pids {
            write(
                v1("pids", "pids.max"),
                if p <= 0 { "max".into() } else { p.to_string() },
            )?;
        }
    }
    Ok(())
}
