//! containerd-shim-palisade-v2 under a private containerd, driven by ctr.

use palisade_integration::containerd::{build_image, Containerd, Shared, SharedGuard};
use palisade_integration::*;

/// One containerd and one image for the whole file; tests take turns.
fn ctrd() -> SharedGuard {
    static CTRD: Shared = Shared::new();
    CTRD.get(|| {
        let c = Containerd::start("shim");
        let archive = build_image(&c.dir, None);
        c.import_image(&archive);
        c
    })
}

fn out(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn stdout_and_exit_code_reach_ctr() {
    let c = ctrd();
    let o = c.run(
        "exit-code",
        &[],
        &[],
        &["sh", "-c", "echo hello from palisade; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(stdout(&o).contains("hello from palisade"), "{}", out(&o));
}

fn inline(spec: &str) -> String {
    format!(
        "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {{name: ctr-test}}\nspec:\n{spec}"
    )
}

#[test]
fn a_signal_terminated_task_reports_128_plus_the_signal() {
    let c = ctrd();
    // PID 1 ignores signals from inside its namespace: kill it from outside, as ctr task kill does.
    let runner = std::process::Command::new("timeout")
        .args(["60", "ctr", "--address"])
        .arg(&c.socket)
        .args([
            "--namespace",
            &c.namespace,
            "run",
            "--rm",
            "--runtime",
            palisade_integration::containerd::RUNTIME,
            palisade_integration::containerd::IMAGE,
            "signalled",
            "sleep",
            "600",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ctr run");
    wait_running(&c, "signalled");
    let k = c.ctr(&["tasks", "kill", "-s", "SIGKILL", "signalled"]);
    assert!(k.status.success(), "{}", out(&k));
    let o = runner.wait_with_output().expect("ctr run result");
    assert_eq!(o.status.code(), Some(137), "{}", out(&o));
}

#[test]
fn a_policy_denial_is_enforced_and_logged_with_the_container_id() {
    let c = ctrd();
    let policy = inline("  file:\n    rules:\n      - {path: /etc/shadow, access: [read], action: deny, id: shadow}\n");
    // Without Palisade's policy the container reads its shadow file.
    let bare = c.run("shadow-bare", &[], &[], &["cat", "/etc/shadow"]);
    assert!(
        stdout(&bare).contains("palisade-test-secret"),
        "{}",
        out(&bare)
    );
    let o = c.run(
        "shadow-denied",
        &[("palisade.dev/policy-inline", &policy)],
        &[],
        &["cat", "/etc/shadow"],
    );
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!stdout(&o).contains("palisade-test-secret"), "{}", out(&o));
    let events = c.events();
    let confined =
        find(&events, "confined", "container_id", "shadow-denied").expect("confined event");
    assert_eq!(confined["policy"], "ctr-test");
    let denial = events
        .iter()
        .find(|e| e["kind"] == "denial" && e["container_id"] == "shadow-denied")
        .expect("denial event");
    assert_eq!(denial["rule_id"], "shadow");
    assert_eq!(denial["layer"], "landlock");
    assert_eq!(denial["target"], "/etc/shadow");
}

#[test]
fn an_invalid_policy_stops_the_container_and_ctr_prints_why() {
    let c = ctrd();
    let bad = inline("  mode: enforcing\n");
    let o = c.run(
        "bad-policy",
        &[("palisade.dev/policy-inline", &bad)],
        &[],
        &["true"],
    );
    assert!(!o.status.success(), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("container bad-policy: policy:"), "{err}");
    assert!(err.contains("annotation palisade.dev/policy-inline:5:9: error: spec.mode: unknown value `enforcing`"), "{err}");
    let tasks = c.ctr(&["tasks", "ls", "-q"]);
    assert!(
        !stdout(&tasks).contains("bad-policy"),
        "no task may be left running"
    );
}

fn wait_running(c: &Containerd, id: &str) {
    for _ in 0..100 {
        let o = c.ctr(&["tasks", "ls"]);
        if stdout(&o)
            .lines()
            .any(|l| l.starts_with(id) && l.contains("RUNNING"))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{id} did not reach RUNNING");
}

fn remove(c: &Containerd, id: &str) {
    let _ = c.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
    for _ in 0..100 {
        let o = c.ctr(&["tasks", "delete", id]);
        if o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = c.ctr(&["containers", "delete", id]);
}

#[test]
fn exec_and_kill_work_and_exec_is_confined_like_the_init() {
    let c = ctrd();
    listen("127.0.0.2:3333");
    let policy = inline("  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, ports: [3333], id: mining-pool}]\n");
    let ann = format!("palisade.dev/policy-inline={policy}");
    let o = c.ctr(&[
        "run",
        "-d",
        "--net-host",
        "--runtime",
        palisade_integration::containerd::RUNTIME,
        "--annotation",
        &ann,
        palisade_integration::containerd::IMAGE,
        "exec-test",
        "sleep",
        "600",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    wait_running(&c, "exec-test");
    let e = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "attack",
        "exec-test",
        "probe",
        "connect",
        "127.0.0.2:3333",
    ]);
    assert_ne!(e.status.code(), Some(0), "{}", out(&e));
    assert!(stdout(&e).contains("DENIED"), "{}", out(&e));
    let ok = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "benign",
        "exec-test",
        "sh",
        "-c",
        "echo exec works",
    ]);
    assert!(
        ok.status.success() && stdout(&ok).contains("exec works"),
        "{}",
        out(&ok)
    );
    let events = c.events();
    let denial = events
        .iter()
        .find(|e| e["kind"] == "denial" && e["container_id"] == "exec-test")
        .expect("denial from the exec'd process");
    assert_eq!(denial["rule_id"], "mining-pool");
    assert_eq!(denial["comm"], "probe");
    // Metrics come from the container's cgroup.
    let m = c.ctr(&["tasks", "metrics", "exec-test"]);
    assert!(m.status.success(), "{}", out(&m));
    assert!(
        stdout(&m).contains("memory.usage_in_bytes") || stdout(&m).contains("memory.usage"),
        "{}",
        out(&m)
    );
    // ctr task kill ends the task (PID 1 without a handler only yields to SIGKILL, as with runc).
    let k = c.ctr(&["tasks", "kill", "-s", "SIGKILL", "exec-test"]);
    assert!(k.status.success(), "{}", out(&k));
    let mut stopped = false;
    for _ in 0..100 {
        let ls = c.ctr(&["tasks", "ls"]);
        if stdout(&ls)
            .lines()
            .any(|l| l.starts_with("exec-test") && l.contains("STOPPED"))
        {
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(stopped, "task did not stop after SIGKILL");
    remove(&c, "exec-test");
}

#[test]
fn killing_the_shim_leaves_the_running_container_confined() {
    let c = ctrd();
    listen("127.0.0.2:3333");
    let before = count_kernel_objects();
    let policy = inline("  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, id: pool}]\n");
    let ann = format!("palisade.dev/policy-inline={policy}");
    let o = c.ctr(&[
        "run",
        "-d",
        "--net-host",
        "--runtime",
        palisade_integration::containerd::RUNTIME,
        "--annotation",
        &ann,
        palisade_integration::containerd::IMAGE,
        "shim-crash",
        "sh",
        "-c",
        "sleep 2; probe connect 127.0.0.2:3333 > /tmp/outcome; sleep 600",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    wait_running(&c, "shim-crash");
    let cgroup =
        std::path::PathBuf::from(format!("/sys/fs/cgroup/unified/{}/shim-crash", c.namespace));
    let pid: i32 = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .expect("container v2 cgroup")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a process in the container");
    // Nothing supervises the container now: containerd is frozen and the shim is dead.
    c.pause(true);
    for s in c.shim_pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(s),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let outcome = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/outcome"));
    let pins = std::fs::read_dir("/sys/fs/bpf/palisade")
        .map(|d| d.count())
        .unwrap_or(0);
    // An operator still sees the orphaned container and its policy.
    let status = std::process::Command::new(palisade_integration::palisade())
        .args(["status", "--state-dir"])
        .arg(c.state_dir())
        .output()
        .expect("palisade status");
    c.pause(false);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.contains("shim-crash") && l.contains("sha256:")),
        "palisade status must list the container whose shim died: {status}"
    );
    let outcome = outcome.expect("the container keeps running without its shim");
    assert!(
        outcome.contains("DENIED"),
        "the container must stay confined without its shim: {outcome}"
    );
    assert!(pins > before.pins, "the pins must outlive the shim");
    // containerd notices the dead shim and runs `shim delete`, which releases everything.
    let start = std::time::Instant::now();
    while count_kernel_objects() != before && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    remove(&c, "shim-crash");
    assert_eq!(
        count_kernel_objects(),
        before,
        "cleanup after the shim's death left objects behind"
    );
    // Once its shim is gone the init is reparented to the host's init, which reaps it in its own time.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit(')')
        .next()
        .map(|r| !r.trim_start().starts_with('Z'))
        .unwrap_or(false);
    assert!(!running, "the container was not cleaned up: {state}");
}

#[test]
fn fifty_cycles_leave_nothing_behind() {
    let c = ctrd();
    let before = count_kernel_objects();
    let fifos_before = std::fs::read_dir("/run/containerd/fifo")
        .map(|d| d.count())
        .unwrap_or(0);
    let shims_before = c.shim_pids().len();
    let policy = inline("  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32}]\n  privileges: {blockSetuid: true}\n");
    for i in 0..50 {
        let o = c.run(
            &format!("cycle-{i}"),
            &[("palisade.dev/policy-inline", &policy)],
            &[],
            &["true"],
        );
        assert!(o.status.success(), "cycle {i}: {}", out(&o));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        count_kernel_objects(),
        before,
        "cgroups, pins or mounts left behind"
    );
    let fifos = std::fs::read_dir("/run/containerd/fifo")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        fifos <= fifos_before,
        "FIFOs left behind: {fifos} > {fifos_before}"
    );
    assert_eq!(
        c.shim_pids().len(),
        shims_before,
        "shim processes left behind"
    );
    let v2_ns = std::path::PathBuf::from(format!("/sys/fs/cgroup/unified/{}", c.namespace));
    let left: Vec<_> = std::fs::read_dir(&v2_ns)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("cycle-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "v2 cgroups left behind: {left:?}");
    let state = std::fs::read_dir(c.state_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(state, 0, "status files left behind");
}

#[test]
fn terminal_mode_gives_the_process_a_tty() {
    let c = ctrd();
    // ctr -t needs a terminal of its own: `script` gives it one, as a user's shell would.
    let inner = format!(
        "ctr --address {} --namespace {} run -t --rm --runtime {} {} tty-test sh -c 'tty; echo term-ok'",
        c.socket.display(),
        c.namespace,
        palisade_integration::containerd::RUNTIME,
        palisade_integration::containerd::IMAGE
    );
    let o = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let text = stdout(&o);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        text.contains("/dev/pts/") || text.contains("/dev/console"),
        "{text}"
    );
    assert!(text.contains("term-ok"), "{text}");
}

#[test]
fn the_policy_capability_drop_reaches_the_container() {
    let c = ctrd();
    let bare = c.run("caps-bare", &[], &[], &["cat", "/proc/self/status"]);
    assert!(
        stdout(&bare).contains("CapEff:\t00000000a80425fb"),
        "{}",
        out(&bare)
    );
    let policy =
        inline("  privileges:\n    capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}\n");
    let o = c.run(
        "caps-dropped",
        &[("palisade.dev/policy-inline", &policy)],
        &[],
        &["cat", "/proc/self/status"],
    );
    // Only CAP_NET_BIND_SERVICE (bit 10) is left, in every set including the bounding set.
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            stdout(&o).contains(&format!("{set}:\t0000000000000400")),
            "{set}: {}",
            out(&o)
        );
    }
}
