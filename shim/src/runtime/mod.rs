//! The runtime helper: `palisade palisade-runtime VERB ...`, run by the shim.
//!
//! libcontainer forks; forking from the shim's multi-threaded ttrpc server
//! is unsafe (runwasi and youki hit deadlocks), so the shim runs the
//! `palisade` binary beside it as a short-lived, single-threaded helper for
//! every call that creates processes, as the runc shim runs runc. Image labels
//! (containerd's gRPC API, an async client) are read there too, so the
//! long-lived shim maps neither libcontainer nor that client.

pub mod executor;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use palisade_policy::plan::Plan;
use palisade_policy::seccomp_profile::SeccompProfile;
use serde::Deserialize;

use executor::PalisadeExecutor;

pub const VERB: &str = "palisade-runtime";
/// The binary that serves as the helper (it carries libcontainer).
pub const HELPER_BINARY: &str = "palisade";
/// The helper verb that prints a container's image config labels as JSON.
pub const IMAGE_LABELS: &str = "image-labels";

/// Arguments as `--key value` pairs after the verb.
struct Args(Vec<String>);

impl Args {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == key)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn need(&self, key: &str) -> Result<&str> {
        self.get(key).with_context(|| format!("missing {key}"))
    }
    fn flag(&self, key: &str) -> bool {
        self.0.iter().any(|a| a == key)
    }
    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == key)
            .filter_map(|(i, _)| self.0.get(i + 1).map(String::as_str))
            .collect()
    }
}

/// Entry point for helper mode; returns the process exit code.
pub fn main(argv: &[String]) -> i32 {
    let args = Args(argv.get(1..).map(|a| a.to_vec()).unwrap_or_default());
    let verb = argv.first().map(String::as_str).unwrap_or_default();
    let result = match verb {
        "create" => create(&args),
        "start" => start(&args),
        "exec" => exec(&args),
        "delete" => delete(&args),
        IMAGE_LABELS => image_labels(&args),
        other => Err(anyhow::anyhow!("unknown helper verb `{other}`")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// FIFOs from containerd: opening read-write never blocks on a missing peer.
/// A stream containerd does not ask for is /dev/null, so the helper's own
/// pipes never reach the container (the shim reads them to the end).
fn open_stdio(path: Option<&str>, input: bool) -> Result<Option<OwnedFd>> {
    let Some(p) = path.filter(|p| !p.is_empty()) else {
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("open /dev/null")?;
        return Ok(Some(null.into()));
    };
    let f = if input {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .with_context(|| format!("open stdin {p}"))?;
        let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let mut oflags = nix::fcntl::OFlag::from_bits_truncate(flags);
        oflags.remove(nix::fcntl::OFlag::O_NONBLOCK);
        nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(oflags))?;
        f
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .with_context(|| format!("open {p}"))?
    };
    Ok(Some(f.into()))
}

/// The plans the shim compiled (the workload's and the node baseline),
/// recompiled here from the same documents; each digest must match, so what
/// is enforced is what was validated and recorded.
fn load_plans(args: &Args) -> Result<Vec<Plan>> {
    let files = args.all("--policy");
    let digests = args.all("--digest");
    if files.len() != digests.len() {
        bail!("every --policy needs its --digest");
    }
    let mut plans = Vec::new();
    for (path, want) in files.into_iter().zip(digests) {
        let loaded =
            palisade_policy::load_file(Path::new(path)).with_context(|| format!("read {path}"))?;
        if loaded.diags.has_errors() || loaded.policies.len() != 1 {
            bail!("policy {path} no longer validates");
        }
        let plan = loaded.policies[0].compile()?;
        if plan.digest != want {
            bail!(
                "policy digest changed between validation ({want}) and use ({})",
                plan.digest
            );
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// The spec's seccomp profile in Palisade's model; a profile that cannot be
/// honoured stops the container (libcontainer would silently drop it).
pub fn spec_seccomp(spec: &Spec) -> Result<Option<SeccompProfile>> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let json = serde_json::to_string(seccomp)?;
    let docs =
        palisade_policy::yaml::parse_documents(&json).map_err(|e| anyhow::anyhow!(e.message))?;
    let mut diags = palisade_policy::Diagnostics::default();
    let profile = docs.first().and_then(|d| {
        palisade_policy::seccomp_profile::decode_profile(d, "linux.seccomp", &mut diags)
    });
    if diags.has_errors() {
        let msgs: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        bail!(
            "the spec's seccomp profile cannot be honoured: {}",
            msgs.join("; ")
        );
    }
    Ok(profile)
}

fn executor(
    args: &Args,
    plans: Vec<Plan>,
    spec: &Spec,
    cgroup_procs_fd: Option<i32>,
) -> Result<PalisadeExecutor> {
    Ok(PalisadeExecutor {
        plans,
        spec_seccomp: spec_seccomp(spec)?,
        setid_by_seccomp: !args.flag("--bpf-lsm"),
        cgroup_procs_fd,
    })
}

fn builder(args: &Args) -> Result<ContainerBuilder> {
    let mut b = ContainerBuilder::new(args.need("--id")?.to_string(), SyscallType::default())
        .with_root_path(args.need("--root")?)?;
    if let Some(sock) = args.get("--console-socket") {
        // The pty becomes the process's stdio.
        return Ok(b.with_console_socket(Some(sock)));
    }
    if let Some(fd) = open_stdio(args.get("--stdin"), true)? {
        b = b.with_stdin(fd);
    }
    if let Some(fd) = open_stdio(args.get("--stdout"), false)? {
        b = b.with_stdout(fd);
    }
    if let Some(fd) = open_stdio(args.get("--stderr"), false)? {
        b = b.with_stderr(fd);
    }
    Ok(b)
}

/// The policy's privileges, written into the spec libcontainer applies: every
/// capability set narrowed to what the policy keeps, and no_new_privs.
fn narrow_spec(config: &Path, plan: &Plan) -> Result<()> {
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).context("read config.json")?)?;
    let process = spec
        .get_mut("process")
        .and_then(|p| p.as_object_mut())
        .context("config.json has no process")?;
    if plan.privileges.no_new_privileges {
        process.insert("noNewPrivileges".into(), serde_json::Value::Bool(true));
    }
    if let Some(caps) = process
        .get_mut("capabilities")
        .and_then(|c| c.as_object_mut())
    {
        let bounding: std::collections::BTreeSet<String> = caps
            .get("bounding")
            .and_then(|b| b.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let keep = plan.effective_caps(&bounding);
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.retain(|c| c.as_str().is_some_and(|c| keep.contains(c)));
            }
        }
    }
    std::fs::write(config, serde_json::to_vec_pretty(&spec)?).context("write config.json")?;
    Ok(())
}

/// The capabilities an exec'd process keeps: the container's, narrowed by every plan.
fn exec_capabilities(spec: &Spec, plans: &[Plan]) -> Option<Vec<String>> {
    if plans.is_empty() {
        return None;
    }
    let value = serde_json::to_value(spec.process().as_ref()?.capabilities().as_ref()?).ok()?;
    let mut caps: std::collections::BTreeSet<String> = value["bounding"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for plan in plans {
        caps = plan.effective_caps(&caps);
    }
    Some(caps.into_iter().collect())
}

fn create(args: &Args) -> Result<()> {
    let bundle = PathBuf::from(args.need("--bundle")?);
    let plans = load_plans(args)?;
    for plan in &plans {
        narrow_spec(&bundle.join("config.json"), plan)?;
    }
    let spec = Spec::load(bundle.join("config.json")).context("read config.json")?;
    let exec = executor(args, plans, &spec, None)?;
    let container = builder(args)?
        .with_executor(exec)
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .context("create container")?;
    let pid = container.pid().context("container has no init pid")?;
    println!("{pid}");
    Ok(())
}

fn image_labels(args: &Args) -> Result<()> {
    let labels = crate::image_labels::image_labels(
        args.need("--address")?,
        args.need("--namespace")?,
        args.need("--id")?,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", serde_json::to_string(&labels)?);
    Ok(())
}

fn load(args: &Args) -> Result<Container> {
    let root = PathBuf::from(args.need("--root")?).join(args.need("--id")?);
    Container::load(root).context("load container state")
}

fn start(args: &Args) -> Result<()> {
    load(args)?.start().context("start container")?;
    Ok(())
}

fn delete(args: &Args) -> Result<()> {
    let root = PathBuf::from(args.need("--root")?).join(args.need("--id")?);
    if !root.exists() {
        return Ok(());
    }
    load(args)?.delete(true).context("delete container")?;
    Ok(())
}

/// The OCI `Process` of an exec request, as containerd sends it (JSON).
#[derive(Deserialize)]
struct ExecProcess {
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    user: Option<ExecUser>,
    #[serde(default, rename = "noNewPrivileges")]
    no_new_privileges: bool,
    #[serde(default)]
    terminal: bool,
}

#[derive(Deserialize)]
struct ExecUser {
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
}

fn exec(args: &Args) -> Result<()> {
    let container = load(args)?;
    let process: ExecProcess = serde_json::from_slice(
        &std::fs::read(args.need("--process")?).context("read process spec")?,
    )?;
    let spec = Spec::load(container.bundle().join("config.json")).context("read config.json")?;
    let procs: Option<File> = args
        .get("--cgroup-procs")
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("open {p}"))
        })
        .transpose()?;
    let exec = executor(
        args,
        load_plans(args)?,
        &spec,
        procs.map(|f| f.into_raw_fd()),
    )?;
    let caps = exec_capabilities(&spec, &exec.plans);
    let no_new_privs =
        process.no_new_privileges || exec.plans.iter().any(|p| p.privileges.no_new_privileges);
    let env = process
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if process.terminal && args.get("--console-socket").is_none() {
        bail!("exec asks for a terminal but no console socket was given");
    }
    let mut tenant = builder(args)?.with_executor(exec).as_tenant();
    if let Some(caps) = caps {
        tenant = tenant.with_capabilities(caps);
    }
    let pid = tenant
        .with_container_args(process.args)
        .with_env(env)
        .with_cwd(process.cwd.map(PathBuf::from))
        .with_user(process.user.as_ref().map(|u| u.uid))
        .with_group(process.user.as_ref().map(|u| u.gid))
        .with_no_new_privs(no_new_privs)
        .with_detach(true)
        .build()
        .context("exec in container")?;
    println!("{pid}");
    Ok(())
}
