//! `palisade policy validate | explain | compile | convert`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use palisade_policy::{load::SourceKind, Loaded, Severity};

/// Loads a file and prints its diagnostics as `FILE:LINE:COL: level: message`.
fn load_reporting(path: &Path) -> Result<Loaded> {
    let loaded = palisade_policy::load_file(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let name = path.display().to_string();
    for d in loaded.diags.clone().sorted() {
        eprintln!("{}", d.render(&name));
    }
    Ok(loaded)
}

/// Exit status 0 when every file is valid, 1 otherwise.
pub fn validate(files: &[PathBuf]) -> Result<i32> {
    let mut failed = false;
    for file in files {
        match load_reporting(file) {
            Ok(loaded) if !loaded.diags.has_errors() => {
                for p in &loaded.policies {
                    if let Err(e) = p.compile() {
                        eprintln!("{}: error: {e}", file.display());
                        failed = true;
                    }
                }
            }
            Ok(_) => failed = true,
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

fn load_one(file: &Path) -> Result<palisade_policy::LoadedPolicy> {
    let loaded = load_reporting(file)?;
    if loaded.diags.has_errors() {
        bail!(
            "{}: {} error(s); fix them first (see above)",
            file.display(),
            loaded.diags.errors().count()
        );
    }
    let mut policies = loaded.policies;
    match policies.len() {
        1 => Ok(policies.remove(0)),
        0 => bail!("{}: no policy in the file", file.display()),
        n => bail!("{}: {n} policies in one file; give one", file.display()),
    }
}

pub fn explain(
    file: &Path,
    available: Option<&std::collections::BTreeSet<palisade_policy::Layer>>,
) -> Result<()> {
    let plan = load_one(file)?.compile()?;
    print!("{}", palisade_policy::explain::explain(&plan, available));
    Ok(())
}

pub fn compile(file: &Path) -> Result<()> {
    let plan = load_one(file)?.compile()?;
    let caps = plan.effective_caps(&palisade_policy::caps_names::all().into_iter().collect());
    let mut seccomp = Vec::new();
    for spec in plan.seccomp_filters(&caps, true) {
        let mut per_arch = serde_json::Map::new();
        for arch in palisade_policy::seccomp_profile::TARGET_ARCHES {
            let prog = spec.compile(arch)?;
            per_arch.insert(
                serde_json::to_value(arch)?
                    .as_str()
                    .unwrap_or("arch")
                    .to_string(),
                serde_json::json!({"instructions": prog.map_or(0, |p| p.len())}),
            );
        }
        seccomp.push(serde_json::json!({
            "filter": spec.name,
            "on_mismatch": spec.mismatch,
            "on_match": spec.matched,
            "syscalls": spec.rules.len(),
            "bpf": per_arch,
        }));
    }
    let out = serde_json::json!({
        "plan": plan,
        "seccomp_filters": seccomp,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn convert(file: &Path) -> Result<()> {
    let loaded = load_reporting(file)?;
    if loaded.diags.has_errors() {
        bail!("{}: cannot convert a document with errors", file.display());
    }
    for (i, p) in loaded.policies.iter().enumerate() {
        if p.source == SourceKind::Palisade {
            eprintln!(
                "{}: note: document {} is already a Palisade policy",
                file.display(),
                i + 1
            );
        }
        if i > 0 {
            println!("---");
        }
        print!("{}", palisade_policy::emit::to_yaml(&p.policy)?);
    }
    let _ = Severity::Error;
    Ok(())
}
