//! `palisade run --policy FILE [--audit] -- CMD...`: confine a plain process
//! exactly as a container would be, supervise it, release everything after.

use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, RingBufferBuilder};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use palisade_enforce::bpf::abi::RawEvent;
use palisade_enforce::events::{EventSink, WorkloadInfo};
use palisade_enforce::workload::{self, WorkloadSpec};
use palisade_enforce::{caps_layer, host};
use palisade_policy::model::Mode;
use tracing::warn;

pub struct RunArgs {
    pub policy: PathBuf,
    pub audit: bool,
    pub id: Option<String>,
    pub user: Option<String>,
    pub events: PathBuf,
    pub state_dir: PathBuf,
    pub command: Vec<String>,
}

const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn parse_user(s: &str) -> Result<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Ok((
        u.parse()
            .with_context(|| format!("--user `{s}`: expected UID[:GID]"))?,
        g.parse()
            .with_context(|| format!("--user `{s}`: expected UID[:GID]"))?,
    ))
}

pub fn run(args: RunArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!("no command given: palisade run --policy FILE -- CMD [ARG...]");
    }
    let loaded = palisade_policy::load_file(&args.policy)
        .with_context(|| format!("{}: cannot read", args.policy.display()))?;
    let name = args.policy.display().to_string();
    for d in loaded.diags.clone().sorted() {
        eprintln!("{}", d.render(&name));
    }
    if loaded.diags.has_errors() {
        bail!("{name}: invalid policy; nothing was started");
    }
    let mut policies = loaded.policies;
    if policies.len() != 1 {
        bail!("{name}: expected one policy, found {}", policies.len());
    }
    let mut lp = policies.remove(0);
    if args.audit {
        lp.policy.spec.mode = Mode::Audit;
    }
    let plan = lp.compile()?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    let info = WorkloadInfo {
        container_id: id.clone(),
        policy: plan.name.clone(),
        policy_digest: plan.digest.clone(),
        policy_source: Some("file".into()),
        ..Default::default()
    };
    let user = args.user.as_deref().map(parse_user).transpose()?;
    let host = host::detect_cached(&args.state_dir);
    let spec = WorkloadSpec {
        id: id.clone(),
        plan: &plan,
        info: info.clone(),
        root: PathBuf::from("/"),
        user,
        base_caps: caps_layer::current_permitted(),
        state_dir: args.state_dir.clone(),
        events_path: args.events.clone(),
    };
    let mut confinement = workload::prepare(&spec, &host)
        .with_context(|| format!("workload `{id}`, policy `{}`: not started", plan.name))?;
    let sink = EventSink::new(&args.events);
    if let Err(e) = sink.write(&confinement.confined_event(&info)) {
        confinement.release();
        bail!(
            "cannot write the confined event to {}: {e}; not started",
            args.events.display()
        );
    }

    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block().context("block signals")?;

    let in_process = Mutex::new(Some(std::mem::replace(
        &mut confinement.in_process,
        palisade_enforce::confine::InProcess {
            cgroup_procs: None,
            caps: None,
            no_new_privs: false,
            user: None,
            landlock: None,
            seccomp: None,
        },
    )));
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    // SAFETY: the parent is single-threaded here; the closure only makes
    // system calls on state prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
            let mut guard = in_process
                .lock()
                .map_err(|_| std::io::Error::other("lock"))?;
            if let Some(mut p) = guard.take() {
                if let Err(e) = p.apply() {
                    let msg = format!("palisade: confinement failed, not executing: {e}\n");
                    let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            Ok(())
        });
    }
    let attributor = confinement.attributor(&plan, &info);
    // Built before the spawn: a refused execve is reported by the kernel
    // before the spawn returns its error.
    let ring = confinement.bpf.as_ref().and_then(|b| {
        let map = b.object.maps().find(|m| m.name() == "events")?;
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&map as &dyn MapCore, |data: &[u8]| {
                if let Some(ev) = RawEvent::from_bytes(data).and_then(|r| attributor.attribute(&r))
                {
                    if let Err(e) = sink.write(&ev) {
                        warn!(error = %e, "cannot write event");
                    }
                }
                0
            })
            .ok()?;
        builder.build().ok()
    });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = &ring {
                let _ = r.consume();
            }
            drop(ring);
            confinement.release();
            bail!("{}: {e}", args.command[0]);
        }
    };
    let child_pid = child.id() as i32;
    std::thread::spawn(move || loop {
        if let Ok(sig) = mask.wait() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), sig);
        }
    });

    // Every record of the workload is committed before its exit is seen, so
    // one last consume after the exit misses nothing.
    if let Some(r) = &ring {
        let exited = crate::ring_wait::pidfd(child_pid).context("pidfd of the workload")?;
        loop {
            let done =
                crate::ring_wait::wait(r, exited.as_fd()).context("wait for the workload")?;
            let _ = r.consume();
            if done {
                break;
            }
        }
    }
    let status = child.wait().context("wait")?;
    drop(ring);
    confinement.release();
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
