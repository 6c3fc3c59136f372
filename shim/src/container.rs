//! One container's life in the shim: create (policy, helper, v2 cgroup, BPF,
//! `confined` event), start, wait, kill, exec, delete. Testable apart from
//! the ttrpc service, which only translates requests.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use containerd_shim::monitor::{monitor_subscribe, wait_pid, Subscription, Topic};
use libbpf_rs::{MapCore, MapHandle, RingBufferBuilder};
use palisade_enforce::bpf::{self, abi::RawEvent, Watch};
use palisade_enforce::cgroup::WorkloadCgroup;
use palisade_enforce::events::{EventSink, WorkloadInfo};
use palisade_enforce::host::HostLayers;
use palisade_enforce::workload::{observer_tables, WorkloadState};
use palisade_enforce::{layers, workload};
use palisade_policy::plan::{Layer, Plan};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::policy_source;
use crate::runtime;

/// Node-level settings the shim runs with (node config file: see INTERFACE.md).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub policy_dir: PathBuf,
    pub events_path: PathBuf,
    pub state_dir: PathBuf,
    pub default_policy: Option<String>,
    pub baseline_policy: Option<String>,
    pub require_policy: bool,
    pub allow_audit_mode: bool,
}

impl NodeSettings {
    pub fn node_policy(&self) -> policy_source::NodePolicy {
        policy_source::NodePolicy {
            policy_dir: self.policy_dir.clone(),
            default_policy: self.default_policy.clone(),
            baseline_policy: self.baseline_policy.clone(),
            require_policy: self.require_policy,
            allow_audit_mode: self.allow_audit_mode,
        }
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            policy_dir: PathBuf::from(policy_source::DEFAULT_POLICY_DIR),
            events_path: PathBuf::from(palisade_enforce::events::DEFAULT_EVENTS_PATH),
            state_dir: PathBuf::from(workload::DEFAULT_STATE_DIR),
            default_policy: None,
            baseline_policy: None,
            require_policy: false,
            allow_audit_mode: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What `delete` (also after a shim restart) needs to undo.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Persisted {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    pub init_pid: i32,
    /// One per enforced policy (the workload's, the baseline).
    pub workload_ids: Vec<String>,
    pub pin_dirs: Vec<PathBuf>,
    pub cgroup: Option<PathBuf>,
    pub cgroup_created: Vec<PathBuf>,
    pub rootfs_mounted: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub code: i32,
    pub at: time::OffsetDateTime,
}

/// A process of the container: the init, or one added by exec.
pub struct Proc {
    pub pid: Mutex<i32>,
    pub status: Mutex<Status>,
    pub exit: Mutex<Option<Exit>>,
    pub exited: Condvar,
    pub stdio: StdioPaths,
    /// For exec processes: the OCI Process JSON.
    pub spec: Option<Vec<u8>>,
    pub console: Mutex<Option<Arc<crate::console::Console>>>,
}

impl Proc {
    fn new(stdio: StdioPaths, spec: Option<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self {
            pid: Mutex::new(0),
            status: Mutex::new(Status::Created),
            exit: Mutex::new(None),
            exited: Condvar::new(),
            stdio,
            spec,
            console: Mutex::new(None),
        })
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let console = self
            .console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match console {
            Some(c) => c.resize(width, height),
            None => bail!("the process has no terminal"),
        }
    }

    pub fn pid(&self) -> i32 {
        *self.pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wait(&self) -> Exit {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = *exit {
                return e;
            }
            exit = self.exited.wait(exit).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn set_exited(&self, code: i32) {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        *exit = Some(Exit {
            code,
            at: time::OffsetDateTime::now_utc(),
        });
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Status::Stopped;
        self.exited.notify_all();
    }
}

pub struct Confined {
    pub plan: Plan,
    pub info: WorkloadInfo,
    pub origin: String,
    pub cgroup: WorkloadCgroup,
    /// Closing it ends the event reader, which drains the ring first.
    stop_events: Mutex<Option<std::io::PipeWriter>>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub struct Container {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    pub init: Arc<Proc>,
    pub execs: Mutex<HashMap<String, Arc<Proc>>>,
    /// The workload's policy and the node baseline, each fully enforced.
    pub confined: Vec<Confined>,
    pub settings: NodeSettings,
    pub bpf_lsm: bool,
    /// The spec's cgroupsPath: where stats are read.
    pub cgroups_path: Option<String>,
    persisted: Mutex<Persisted>,
}

pub fn runtime_root(settings: &NodeSettings, namespace: &str) -> PathBuf {
    settings.state_dir.join("runtime").join(namespace)
}

pub fn container_dir(settings: &NodeSettings, namespace: &str, id: &str) -> PathBuf {
    settings
        .state_dir
        .join("containers")
        .join(namespace)
        .join(id)
}

/// The id pins and status use: unique across namespaces. bpffs refuses
/// names with a dot (EPERM), and namespaces such as `k8s.io` have one.
fn workload_id(namespace: &str, id: &str) -> String {
    format!("{namespace}-{id}").replace('.', "_")
}

/// The runtime helper is the `palisade` binary installed beside the shim:
/// the long-lived shim then never maps libcontainer or containerd's gRPC
/// client, which only the short-lived helper runs.
fn helper_binary() -> Result<PathBuf> {
    let shim = std::env::current_exe().context("own executable")?;
    let helper = shim.with_file_name(runtime::HELPER_BINARY);
    if !helper.is_file() {
        bail!(
            "the runtime helper {} is missing: install `{}` beside the shim (make install)",
            helper.display(),
            runtime::HELPER_BINARY
        );
    }
    Ok(helper)
}

/// Runs the runtime helper; returns its stdout. Exits are collected through
/// the shim crate's reaper, so the subscription exists before the spawn.
fn helper(args: &[String]) -> Result<String> {
    let exe = helper_binary()?;
    let sub = monitor_subscribe(Topic::Pid).map_err(|e| anyhow!("subscribe to exits: {e}"))?;
    let mut child = Command::new(exe)
        .arg(runtime::VERB)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn runtime helper")?;
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let code = wait_pid(child.id() as i32, sub);
    if code != 0 {
        let reason = err
            .lines()
            .rfind(|l| !l.trim().is_empty() && !l.contains(" WARN ") && !l.contains(" INFO "))
            .unwrap_or("runtime helper failed")
            .replace('\0', "");
        bail!("{reason}");
    }
    Ok(out)
}

/// The container's image config labels, read by the helper through containerd's API.
fn image_labels(address: &str, namespace: &str, id: &str) -> Result<HashMap<String, String>> {
    let out = helper(&[
        runtime::IMAGE_LABELS.into(),
        "--address".into(),
        address.into(),
        "--namespace".into(),
        namespace.into(),
        "--id".into(),
        id.into(),
    ])?;
    serde_json::from_str(&out).context("the helper's image labels")
}

fn read_annotations(bundle: &Path) -> Result<(serde_json::Value, HashMap<String, String>)> {
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).context("read config.json")?,
    )
    .context("parse config.json")?;
    let annotations = spec["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok((spec, annotations))
}

/// Events name pods and containers the way CRI labels them.
fn workload_info(
    id: &str,
    annotations: &HashMap<String, String>,
    plan: &Plan,
    origin: &str,
) -> WorkloadInfo {
    let get = |k: &str| annotations.get(k).cloned();
    WorkloadInfo {
        container_id: id.to_string(),
        sandbox_id: get("io.kubernetes.cri.sandbox-id"),
        pod: get("io.kubernetes.cri.sandbox-name"),
        pod_namespace: get("io.kubernetes.cri.sandbox-namespace"),
        container_name: get("io.kubernetes.cri.container-name"),
        image: get("io.kubernetes.cri.image-name"),
        policy: plan.name.clone(),
        policy_digest: plan.digest.clone(),
        policy_source: Some(origin.to_string()),
    }
}

pub struct CreateRequest {
    /// containerd's gRPC socket, for image labels (empty: do not look them up).
    pub containerd_address: String,
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<(String, String, Vec<String>)>,
    pub stdio: StdioPaths,
}

impl Container {
    pub fn create(
        req: CreateRequest,
        settings: &NodeSettings,
        host: &HostLayers,
    ) -> Result<Arc<Self>> {
        let CreateRequest {
            containerd_address,
            id,
            namespace,
            bundle,
            rootfs,
            stdio,
        } = req;
        let (spec, annotations) = read_annotations(&bundle)?;
        // Everything that can fail on user input fails before anything exists.
        let sandbox = annotations
            .get("io.kubernetes.cri.container-type")
            .is_some_and(|t| t == "sandbox");
        // Image labels never reach the spec: ask containerd, unless an annotation already decided.
        let decided = annotations.contains_key(policy_source::POLICY_KEY)
            || annotations.contains_key(policy_source::INLINE_KEY);
        let labels = if sandbox || decided || containerd_address.is_empty() {
            HashMap::new()
        } else {
            image_labels(&containerd_address, &namespace, &id)
                .map_err(|e| anyhow!("container {id}: image labels: {e}"))?
        };
        let selected =
            policy_source::select_all(&annotations, &labels, &settings.node_policy(), sandbox)
                .map_err(|e| anyhow!("container {id}: policy: {e}"))?;
        let mut plans = Vec::new();
        for s in &selected {
            let plan = s
                .loaded
                .compile()
                .map_err(|e| anyhow!("container {id}: policy: {e}"))?;
            layers::assign(&plan, host).map_err(|e| anyhow!("container {id}: {e}"))?;
            plans.push(plan);
        }

        let dir = container_dir(settings, &namespace, &id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut persisted = Persisted {
            id: id.clone(),
            namespace: namespace.clone(),
            bundle: bundle.clone(),
            ..Default::default()
        };
        let container = Self::create_inner(
            &id,
            &namespace,
            &bundle,
            &rootfs,
            &stdio,
            &spec,
            &annotations,
            selected,
            plans,
            settings,
            host,
            &dir,
            &mut persisted,
        );
        match container {
            Ok(c) => Ok(c),
            Err(e) => {
                // Fail closed and leave nothing behind.
                cleanup(&persisted, settings);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_inner(
        id: &str,
        namespace: &str,
        bundle: &Path,
        rootfs: &[(String, String, Vec<String>)],
        stdio: &StdioPaths,
        spec: &serde_json::Value,
        annotations: &HashMap<String, String>,
        selected: Vec<policy_source::Selected>,
        plans: Vec<Plan>,
        settings: &NodeSettings,
        host: &HostLayers,
        dir: &Path,
        persisted: &mut Persisted,
    ) -> Result<Arc<Self>> {
        let rootfs_dir = bundle.join("rootfs");
        for (fs_type, source, options) in rootfs {
            std::fs::create_dir_all(&rootfs_dir).ok();
            containerd_shim::mount::mount_rootfs(Some(fs_type), Some(source), options, &rootfs_dir)
                .map_err(|e| anyhow!("container {id}: mount rootfs: {e}"))?;
            persisted.rootfs_mounted = true;
        }
        save(dir, persisted)?;

        let mut args: Vec<String> = vec![
            "create".into(),
            "--id".into(),
            id.into(),
            "--root".into(),
            runtime_root(settings, namespace).display().to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
        ];
        let console = stdio_args(
            &mut args,
            stdio,
            &settings.state_dir,
            &format!("{namespace}/{id}"),
        )
        .map_err(|e| anyhow!("container {id}: {e:#}"))?;
        if host.has(Layer::BpfLsm) {
            args.push("--bpf-lsm".into());
        }
        for (i, (sel, plan)) in selected.iter().zip(&plans).enumerate() {
            let policy_file = dir.join(format!("policy-{i}.yaml"));
            std::fs::write(&policy_file, &sel.source)
                .context("write policy for the runtime helper")?;
            args.extend([
                "--policy".into(),
                policy_file.display().to_string(),
                "--digest".into(),
                plan.digest.clone(),
            ]);
        }
        // The init's exit may come any time after the helper returns.
        let exits =
            monitor_subscribe(Topic::Pid).map_err(|e| anyhow!("subscribe to exits: {e}"))?;
        let out = helper(&args).map_err(|e| anyhow!("container {id}: create: {e}"))?;
        let init_pid: i32 = out
            .trim()
            .parse()
            .map_err(|_| anyhow!("container {id}: runtime helper printed no pid: {out:?}"))?;
        persisted.init_pid = init_pid;
        save(dir, persisted)?;

        let mut confined = Vec::new();
        if !plans.is_empty() {
            let cgroup = Self::place(id, namespace, init_pid, spec, host, dir, persisted)?;
            for (i, (sel, plan)) in selected.into_iter().zip(plans).enumerate() {
                confined.push(Self::confine(
                    id,
                    namespace,
                    i,
                    &cgroup,
                    annotations,
                    sel.origin,
                    plan,
                    settings,
                    host,
                    &rootfs_dir,
                    dir,
                    persisted,
                )?);
            }
        }

        let init = Proc::new(stdio.clone(), None);
        *init.pid.lock().unwrap_or_else(|e| e.into_inner()) = init_pid;
        *init.console.lock().unwrap_or_else(|e| e.into_inner()) = console;
        let container = Arc::new(Self {
            id: id.to_string(),
            namespace: namespace.to_string(),
            bundle: bundle.to_path_buf(),
            init,
            execs: Mutex::new(HashMap::new()),
            confined,
            settings: settings.clone(),
            bpf_lsm: host.has(Layer::BpfLsm),
            cgroups_path: spec["linux"]["cgroupsPath"].as_str().map(str::to_string),
            persisted: Mutex::new(persisted.clone()),
        });
        watch_exit(container.init.clone(), init_pid, exits);
        Ok(container)
    }

    /// The container's v2 cgroup, at the same relative path as the runtime's
    /// own (runc does the same on hybrid hosts); the init is blocked at
    /// libcontainer's start barrier, so it is there before it runs anything.
    fn place(
        id: &str,
        namespace: &str,
        init_pid: i32,
        spec: &serde_json::Value,
        host: &HostLayers,
        dir: &Path,
        persisted: &mut Persisted,
    ) -> Result<WorkloadCgroup> {
        let v2 = host
            .cgroup2
            .clone()
            .ok_or_else(|| anyhow!("container {id}: cgroup v2 is not mounted"))?;
        let relative = spec["linux"]["cgroupsPath"]
            .as_str()
            .filter(|p| !p.is_empty() && !p.contains(':'))
            .map(str::to_string)
            .unwrap_or_else(|| format!("palisade/{}", workload_id(namespace, id)));
        let (cgroup, created) = WorkloadCgroup::ensure_at(&v2, &relative)
            .map_err(|e| anyhow!("container {id}: {e}"))?;
        persisted.cgroup = Some(cgroup.path.clone());
        persisted.cgroup_created = created;
        save(dir, persisted)?;
        cgroup
            .add_pid(init_pid)
            .map_err(|e| anyhow!("container {id}: {e}"))?;
        Ok(cgroup)
    }

    /// Attaches one policy's programs to the container's cgroup.
    #[allow(clippy::too_many_arguments)]
    fn confine(
        id: &str,
        namespace: &str,
        index: usize,
        cgroup: &WorkloadCgroup,
        annotations: &HashMap<String, String>,
        origin: String,
        plan: Plan,
        settings: &NodeSettings,
        host: &HostLayers,
        rootfs: &Path,
        dir: &Path,
        persisted: &mut Persisted,
    ) -> Result<Confined> {
        let wid = match index {
            0 => workload_id(namespace, id),
            n => format!("{}-{n}", workload_id(namespace, id)),
        };
        let tables = observer_tables(&plan, host, true);
        persisted.workload_ids.push(wid.clone());
        persisted.pin_dirs.push(bpf::pin_dir(&wid));
        save(dir, persisted)?;
        let attached = bpf::attach(
            &plan,
            &wid,
            cgroup,
            host,
            rootfs,
            &Watch {
                syscalls: tables.watched.clone(),
            },
        )
        .map_err(|e| anyhow!("container {id}, policy {}: {e}", plan.name))?;
        let pin_dir = attached.pin_dir.clone();
        // The pins hold the links; the loader's handles can go.
        drop(attached);

        let info = workload_info(id, annotations, &plan, &origin);
        let sink = EventSink::new(&settings.events_path);
        let assignment = layers::assign(&plan, host).map_err(|e| anyhow!("container {id}: {e}"))?;
        let mut confined_ev = info.event("confined");
        confined_ev.layers = serde_json::to_value(&assignment.rules_per_layer).ok();
        if !assignment.skipped.is_empty() {
            confined_ev.skipped = serde_json::to_value(&assignment.skipped).ok();
        }
        confined_ev.message = Some(format!("policy from {origin}"));
        sink.write(&confined_ev).map_err(|e| {
            anyhow!(
                "container {id}: write the confined event to {}: {e}",
                settings.events_path.display()
            )
        })?;
        let state = WorkloadState {
            id: wid.clone(),
            policy: plan.name.clone(),
            policy_digest: plan.digest.clone(),
            policy_source: origin.clone(),
            layers: assignment
                .rules_per_layer
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            cgroup: cgroup.path.clone(),
            pin_dir: pin_dir.clone(),
            events_path: settings.events_path.clone(),
            started: palisade_enforce::events::now_rfc3339(),
        };
        std::fs::write(
            settings.state_dir.join(format!("{wid}.json")),
            serde_json::to_vec_pretty(&state)?,
        )
        .context("write status")?;

        let (stop_reader, stop) = std::io::pipe().context("event reader stop pipe")?;
        let reader = spawn_event_reader(
            pin_dir.join("events"),
            plan.clone(),
            info.clone(),
            tables,
            sink,
            stop_reader,
        );
        info!(container = %id, policy = %plan.name, digest = %plan.digest, "confined");
        Ok(Confined {
            plan,
            info,
            origin,
            cgroup: cgroup.clone(),
            stop_events: Mutex::new(Some(stop)),
            reader: Mutex::new(Some(reader)),
        })
    }

    fn helper_common(&self, verb: &str) -> Vec<String> {
        vec![
            verb.into(),
            "--id".into(),
            self.id.clone(),
            "--root".into(),
            runtime_root(&self.settings, &self.namespace)
                .display()
                .to_string(),
        ]
    }

    pub fn start(&self) -> Result<i32> {
        helper(&self.helper_common("start"))
            .map_err(|e| anyhow!("container {}: start: {e}", self.id))?;
        let mut status = self.init.status.lock().unwrap_or_else(|e| e.into_inner());
        if *status == Status::Created {
            *status = Status::Running;
        }
        Ok(self.init.pid())
    }

    pub fn add_exec(&self, exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Result<()> {
        if stdio.terminal {
            bail!(
                "container {}: exec {exec_id}: terminal mode is not supported by Palisade yet",
                self.id
            );
        }
        let mut execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.contains_key(exec_id) {
            bail!("container {}: exec id {exec_id} already exists", self.id);
        }
        execs.insert(exec_id.to_string(), Proc::new(stdio, Some(spec)));
        Ok(())
    }

    /// The init for an empty exec id, otherwise that exec'd process.
    pub fn process(&self, exec_id: &str) -> Option<Arc<Proc>> {
        if exec_id.is_empty() {
            Some(self.init.clone())
        } else {
            self.exec_proc(exec_id)
        }
    }

    pub fn exec_proc(&self, exec_id: &str) -> Option<Arc<Proc>> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(exec_id)
            .cloned()
    }

    /// Starts an exec'd process with exactly the container's confinement.
    pub fn start_exec(&self, exec_id: &str) -> Result<i32> {
        let proc = self
            .exec_proc(exec_id)
            .ok_or_else(|| anyhow!("container {}: no exec {exec_id}", self.id))?;
        let dir = container_dir(&self.settings, &self.namespace, &self.id);
        let process_file = dir.join(format!("exec-{exec_id}.json"));
        std::fs::write(&process_file, proc.spec.as_deref().unwrap_or_default())?;
        let mut args = self.helper_common("exec");
        args.extend(["--process".into(), process_file.display().to_string()]);
        let key = format!("{}/{}/{exec_id}", self.namespace, self.id);
        let console = stdio_args(&mut args, &proc.stdio, &self.settings.state_dir, &key)
            .map_err(|e| anyhow!("container {}: exec {exec_id}: {e:#}", self.id))?;
        *proc.console.lock().unwrap_or_else(|e| e.into_inner()) = console;
        if self.bpf_lsm {
            args.push("--bpf-lsm".into());
        }
        for (i, c) in self.confined.iter().enumerate() {
            args.extend([
                "--policy".into(),
                dir.join(format!("policy-{i}.yaml")).display().to_string(),
                "--digest".into(),
                c.plan.digest.clone(),
            ]);
        }
        if let Some(c) = self.confined.first() {
            args.extend([
                "--cgroup-procs".into(),
                c.cgroup.path.join("cgroup.procs").display().to_string(),
            ]);
        }
        let exits =
            monitor_subscribe(Topic::Pid).map_err(|e| anyhow!("subscribe to exits: {e}"))?;
        let out = match helper(&args) {
            Ok(out) => out,
            Err(e) => {
                // It never ran: record that, so containerd can delete it at once.
                proc.set_exited(126);
                return Err(anyhow!("container {}: exec {exec_id}: {e}", self.id));
            }
        };
        let _ = std::fs::remove_file(&process_file);
        let pid: i32 = out.trim().parse().map_err(|_| {
            anyhow!(
                "container {}: exec {exec_id}: no pid from the runtime helper",
                self.id
            )
        })?;
        *proc.pid.lock().unwrap_or_else(|e| e.into_inner()) = pid;
        *proc.status.lock().unwrap_or_else(|e| e.into_inner()) = Status::Running;
        watch_exit(proc, pid, exits);
        Ok(pid)
    }

    /// Signals the init (or an exec'd process); `all`: every process of the container.
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = nix::sys::signal::Signal::try_from(signal as i32)
            .map_err(|_| anyhow!("signal {signal} is not valid"))?;
        let send = |pid: i32| {
            if pid > 0 {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        };
        if !exec_id.is_empty() {
            let p = self
                .exec_proc(exec_id)
                .ok_or_else(|| anyhow!("no exec {exec_id}"))?;
            if p.exit().is_none() {
                send(p.pid());
            }
            return Ok(());
        }
        if all {
            for pid in self.pids() {
                send(pid);
            }
        }
        if self.init.exit().is_none() {
            send(self.init.pid());
        } else if !all {
            bail!("container {}: process already finished", self.id);
        }
        Ok(())
    }

    pub fn pids(&self) -> Vec<i32> {
        match self.confined.first() {
            Some(c) => c.cgroup.pids(),
            None => {
                let pid = self.init.pid();
                if self.init.exit().is_none() && pid > 0 {
                    vec![pid]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Removes the container and everything Palisade created for it.
    pub fn delete(&self) -> Result<Exit> {
        let exit = self.init.exit().unwrap_or(Exit {
            code: 255,
            at: time::OffsetDateTime::now_utc(),
        });
        for c in &self.confined {
            drop(
                c.stop_events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
            );
            if let Some(h) = c.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = h.join();
            }
            let mut ev = c.info.event("released");
            ev.message = Some(format!("exit status {}", exit.code));
            let _ = EventSink::new(&self.settings.events_path).write(&ev);
        }
        let persisted = self
            .persisted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        cleanup(&persisted, &self.settings);
        Ok(exit)
    }

    pub fn persisted(&self) -> Persisted {
        self.persisted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The helper's stdio flags: a console socket in terminal mode (the pty is
/// then the process's stdio), containerd's FIFOs otherwise.
fn stdio_args(
    args: &mut Vec<String>,
    stdio: &StdioPaths,
    state_dir: &Path,
    key: &str,
) -> Result<Option<Arc<crate::console::Console>>> {
    if stdio.terminal {
        let sock = crate::console::socket_path(state_dir, key);
        let console =
            crate::console::Console::listen(&sock, stdio.stdin.clone(), stdio.stdout.clone())?;
        args.extend(["--console-socket".into(), sock.display().to_string()]);
        return Ok(Some(console));
    }
    for (flag, path) in [
        ("--stdin", &stdio.stdin),
        ("--stdout", &stdio.stdout),
        ("--stderr", &stdio.stderr),
    ] {
        if !path.is_empty() {
            args.push(flag.into());
            args.push(path.clone());
        }
    }
    Ok(None)
}

fn save(dir: &Path, p: &Persisted) -> Result<()> {
    std::fs::write(dir.join("state.json"), serde_json::to_vec_pretty(p)?)
        .context("save container state")
}

pub fn load_persisted(settings: &NodeSettings, namespace: &str, id: &str) -> Option<Persisted> {
    let bytes = std::fs::read(container_dir(settings, namespace, id).join("state.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Idempotent: runs on delete, on a failed create, and from `shim delete`.
pub fn cleanup(p: &Persisted, settings: &NodeSettings) {
    let mut args = vec![
        "delete".to_string(),
        "--id".into(),
        p.id.clone(),
        "--root".into(),
        runtime_root(settings, &p.namespace).display().to_string(),
    ];
    if let Err(e) = helper(&args) {
        warn!(container = %p.id, error = %e, "runtime delete");
        if p.init_pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.init_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        args.clear();
    }
    for dir in &p.pin_dirs {
        if let Err(e) = bpf::remove_pins(dir) {
            warn!(container = %p.id, error = %e, "unpin");
        }
    }
    if let Some(path) = &p.cgroup {
        if let (Some(root), false) = (
            palisade_enforce::host::cgroup2_mount(),
            p.cgroup_created.is_empty(),
        ) {
            if let Ok(cg) = WorkloadCgroup::open_path(&root, path.clone()) {
                if let Err(e) = cg.remove_created(&p.cgroup_created) {
                    warn!(container = %p.id, error = %e, "remove v2 cgroup");
                }
            }
        }
    }
    for wid in &p.workload_ids {
        let _ = std::fs::remove_file(settings.state_dir.join(format!("{wid}.json")));
    }
    if p.rootfs_mounted {
        let rootfs = p.bundle.join("rootfs");
        if let Err(e) = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::ENOENT {
                warn!(container = %p.id, error = %e, "unmount rootfs");
            }
        }
    }
    let dir = container_dir(settings, &p.namespace, &p.id);
    let _ = std::fs::remove_dir_all(&dir);
    for d in [dir.parent(), dir.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_dir(d);
    }
}

fn watch_exit(proc: Arc<Proc>, pid: i32, exits: Subscription) {
    std::thread::spawn(move || {
        let code = wait_pid(pid, exits);
        proc.set_exited(code);
    });
}

/// Reads the pinned ring buffer until the container is deleted; being a
/// pinned map, a restarted shim can open it again.
fn spawn_event_reader(
    events_pin: PathBuf,
    plan: Plan,
    info: WorkloadInfo,
    tables: workload::ObserverTables,
    sink: EventSink,
    stop: std::io::PipeReader,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let map = match MapHandle::from_pinned_path(&events_pin) {
            Ok(m) => m,
            Err(e) => {
                warn!(pin = %events_pin.display(), error = %e, "open event ring buffer");
                return;
            }
        };
        let attributor = palisade_enforce::events::Attributor {
            plan: &plan,
            info: &info,
            denied_syscalls: tables.denied_syscalls,
            execve_nrs: tables.execve_nrs,
            clock_offset_ns: palisade_enforce::events::clock_offset_ns(),
        };
        let mut builder = RingBufferBuilder::new();
        let added = builder.add(&map as &dyn MapCore, |data: &[u8]| {
            if let Some(ev) = RawEvent::from_bytes(data).and_then(|r| attributor.attribute(&r)) {
                if let Err(e) = sink.write(&ev) {
                    warn!(error = %e, "write event");
                }
            }
            0
        });
        if added.is_err() {
            return;
        }
        let Ok(ring) = builder.build() else { return };
        loop {
            let stopped = crate::ring_wait::wait(&ring, stop.as_fd());
            let _ = ring.consume();
            match stopped {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => {
                    warn!(error = %e, "wait for events");
                    break;
                }
            }
        }
    })
}
