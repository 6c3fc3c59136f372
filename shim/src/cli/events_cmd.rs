//! `palisade events`, `palisade status`, `palisade gc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use palisade_enforce::events::{read_events, Event};
use palisade_enforce::workload;

pub struct Filter {
    pub container: Option<String>,
    pub since: Option<time::OffsetDateTime>,
}

fn keep(ev: &Event, f: &Filter) -> bool {
    if let Some(c) = &f.container {
        if &ev.container_id != c && !ev.container_id.starts_with(c.as_str()) {
            return false;
        }
    }
    if let Some(since) = f.since {
        let t =
            time::OffsetDateTime::parse(&ev.time, &time::format_description::well_known::Rfc3339);
        if t.map(|t| t < since).unwrap_or(true) {
            return false;
        }
    }
    true
}

fn print(ev: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(ev).unwrap_or_default());
        return;
    }
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!(
        "{} {:<9} {:<20} {:<11} {:<8} {:<32} {:<24} {}",
        ev.time,
        ev.kind,
        ev.container_id,
        dash(&ev.layer),
        dash(&ev.operation),
        dash(&ev.target),
        dash(&ev.rule_id),
        dash(&ev.result)
    );
}

pub fn parse_since(s: &str) -> Result<time::OffsetDateTime> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = num
        .parse()
        .with_context(|| format!("--since `{s}`: use RFC 3339 or e.g. 10m, 2h"))?;
    let d = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => anyhow::bail!("--since `{s}`: unit must be s, m, h or d"),
    };
    Ok(time::OffsetDateTime::now_utc() - d)
}

pub fn events(path: &Path, filter: &Filter, json: bool, follow: bool) -> Result<()> {
    let mut shown = 0usize;
    loop {
        let all = match read_events(path) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        for ev in all.iter().skip(shown).filter(|e| keep(e, filter)) {
            print(ev, json);
        }
        shown = all.len();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn status(state_dir: &Path, json: bool) -> Result<()> {
    let states = workload::list_states(state_dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<16} {:<20} {:<8} {:<8} LAYERS",
        "ID", "POLICY", "DIGEST", "DENIALS", "STATE"
    );
    for s in states {
        let denials = read_events(&s.events_path)
            .map(|v| {
                v.iter()
                    .filter(|e| e.container_id == s.id && e.kind == "denial")
                    .count()
            })
            .unwrap_or(0);
        let layers: Vec<String> = s.layers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<40} {:<16} {:<11} {:<20} {:<8} {:<8} {}",
            s.id,
            s.policy,
            s.policy_source,
            s.policy_digest.get(..19).unwrap_or(&s.policy_digest),
            denials,
            if workload::is_idle(&s) {
                "exited"
            } else {
                "running"
            },
            layers.join(" ")
        );
    }
    Ok(())
}

/// Releases workloads whose processes are gone but whose supervisor died before releasing them.
pub fn gc(state_dir: &Path) -> Result<i32> {
    let mut failed = 0;
    for s in workload::list_states(state_dir) {
        if !workload::is_idle(&s) {
            continue;
        }
        match workload::release_state(&s, state_dir) {
            Ok(()) => println!("released {}", s.id),
            Err(e) => {
                eprintln!("palisade: {}: {e}", s.id);
                failed = 1;
            }
        }
    }
    Ok(failed)
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from(workload::DEFAULT_STATE_DIR)
}
