//! The host attack table for `palisade run` (issue: enforcement engine).
//! Each attack first works without a policy, then fails with it, and the
//! event that proves which control fired is in the log.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_integration::*;

/// Listeners on fixed loopback ports and the kernel-object counts are shared.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn policy(s: &Scratch, spec: &str) -> PathBuf {
    s.write(
        "policy.yaml",
        &format!("apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {{name: attack-test}}\nspec:\n{spec}"),
    )
}

fn probe_str() -> String {
    probe().display().to_string()
}

fn assert_denied(o: &std::process::Output, what: &str) {
    assert!(
        !o.status.success() && stdout(o).contains("DENIED"),
        "{what} should be denied; status {:?}, stdout {}, stderr {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn assert_works(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} should work without a policy; stdout {}, stderr {}",
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn reading_a_shadow_like_file_is_denied_by_landlock() {
    let _g = serial();
    let s = Scratch::new("shadow");
    let shadow = s.write("etc/shadow", "root:$6$secret:19000:0:99999:7:::\n");
    let p = probe_str();
    let target = shadow.display().to_string();
    assert_works(&run_confined(&s, None, &[], &[&p, "read", &target]), "read");
    let pol = policy(&s, &format!("  file:\n    rules:\n      - {{path: {target}, access: [read, write], action: deny, id: shadow, severity: 9}}\n"));
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "read", &target]),
        "read",
    );
    let events = s.events();
    let ev =
        find(&events, "denial", "rule_id", "shadow").expect("denial event for the shadow rule");
    assert_eq!(ev["layer"], "landlock");
    assert_eq!(ev["operation"], "file");
    assert_eq!(ev["target"], target.as_str());
    assert_eq!(ev["severity"], 9);
    assert_eq!(ev["result"], "denied");
    // Reading something else still works under the same policy.
    let other = s
        .write("etc/hosts", "127.0.0.1 localhost\n")
        .display()
        .to_string();
    assert_works(
        &run_confined(&s, Some(&pol), &[], &[&p, "read", &other]),
        "read of an unrelated file",
    );
}

#[test]
fn writing_a_sudoers_like_file_is_denied() {
    let _g = serial();
    let s = Scratch::new("sudoers");
    let sudoers = s
        .write("etc/sudoers", "root ALL=(ALL) ALL\n")
        .display()
        .to_string();
    let etc = s.path("etc").display().to_string();
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "write", &sudoers]),
        "write",
    );
    let pol = policy(&s, &format!("  file:\n    rules:\n      - {{dir: {etc}/, recursive: true, access: [write], action: deny, id: etc-readonly}}\n"));
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "write", &sudoers]),
        "write",
    );
    assert_works(
        &run_confined(&s, Some(&pol), &[], &[&p, "read", &sudoers]),
        "read of a write-protected file",
    );
    let events = s.events();
    let ev = find(&events, "denial", "rule_id", "etc-readonly").expect("denial event");
    assert_eq!(ev["layer"], "landlock");
    assert_eq!(ev["access"], "write");
}

#[test]
fn exec_outside_the_allowlist_is_refused_with_eacces() {
    let _g = serial();
    let s = Scratch::new("allowlist");
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "exec", "/usr/bin/true"]),
        "exec",
    );
    let pol = policy(
        &s,
        &format!("  process:\n    default: deny\n    allow: [{{path: {p}}}]\n"),
    );
    let o = run_confined(&s, Some(&pol), &[], &[&p, "exec", "/usr/bin/true"]);
    assert_denied(&o, "exec outside the allowlist");
    assert!(stdout(&o).contains("Permission denied"), "{}", stdout(&o));
    let events = s.events();
    let ev = find(&events, "denial", "operation", "exec").expect("exec denial event");
    assert_eq!(ev["layer"], "landlock");
    assert_eq!(ev["rule_id"], "process.default");
    assert_eq!(ev["target"], "/usr/bin/true");
}

#[test]
fn a_denied_binary_inside_an_allowed_directory_is_stopped_even_through_a_hard_link() {
    let _g = serial();
    let s = Scratch::new("execguard");
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let evil = bin.join("evil");
    std::fs::copy(probe(), &evil).unwrap();
    let link = bin.join("innocent");
    let p = probe_str();
    let (evil_s, link_s) = (evil.display().to_string(), link.display().to_string());
    assert_works(
        &run_confined(&s, None, &[], &[&p, "exec", &evil_s, "euid"]),
        "exec of the binary",
    );
    let pol = policy(
        &s,
        &format!(
            "  process:\n    default: deny\n    allow: [{{path: {p}}}, {{dir: {}/, recursive: true}}]\n    deny: [{{path: {evil_s}, id: no-evil, tags: [MITRE-T1059]}}]\n",
            bin.display()
        ),
    );
    // By its own path: Landlock refuses the execve.
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "exec", &evil_s, "euid"]),
        "exec of the denied path",
    );
    // A hard link made later: Landlock grants by inode, and the allowed
    // directory's other entry is the same inode, so only the exec guard
    // (matching the file's identity) stops it, before its first instruction.
    std::fs::hard_link(&evil, &link).unwrap();
    let o = run_confined(&s, Some(&pol), &[], &[&p, "exec", &link_s, "euid"]);
    assert_eq!(
        o.status.code(),
        Some(128 + 9),
        "killed by SIGKILL; stdout {}",
        stdout(&o)
    );
    assert!(
        !stdout(&o).contains("EUID"),
        "the denied program must not run: {}",
        stdout(&o)
    );
    let events = s.events();
    let guard = events
        .iter()
        .find(|e| e["layer"] == "exec-guard" && e["rule_id"] == "no-evil")
        .expect("exec-guard event");
    assert_eq!(guard["result"], "denied");
    assert_eq!(guard["tags"][0], "MITRE-T1059");
    assert!(events
        .iter()
        .any(|e| e["layer"] == "landlock" && e["rule_id"] == "no-evil"));
}

#[test]
fn fileless_execution_from_a_memfd_is_stopped_unless_the_policy_allows_it() {
    let _g = serial();
    let s = Scratch::new("memfd");
    let p = probe_str();
    let bin = s.path("payload");
    std::fs::copy(probe(), &bin).unwrap();
    let payload = bin.display().to_string();
    let o = run_confined(&s, None, &[], &[&p, "memfd-exec", &payload, "euid"]);
    assert!(stdout(&o).contains("EUID"), "baseline: {}", stdout(&o));
    // A process section without a word on anonymous files: they may not run.
    let pol = policy(&s, "  process: {default: allow}\n");
    let o = run_confined(&s, Some(&pol), &[], &[&p, "memfd-exec", &payload, "euid"]);
    assert_eq!(o.status.code(), Some(137), "{}", stdout(&o));
    assert!(!stdout(&o).contains("EUID"), "{}", stdout(&o));
    let events = s.events();
    let ev = find(&events, "denial", "rule_id", "process.anonymousExec").expect("event");
    assert_eq!(ev["layer"], "exec-guard");
    assert_eq!(ev["operation"], "exec");
    // The same file by its name still runs.
    assert_works(
        &run_confined(&s, Some(&pol), &[], &[&p, "exec", &payload, "euid"]),
        "exec of the named file",
    );
    let allow = policy(&s, "  process: {default: allow, anonymousExec: allow}\n");
    let o = run_confined(&s, Some(&allow), &[], &[&p, "memfd-exec", &payload, "euid"]);
    assert!(stdout(&o).contains("EUID"), "allowed: {}", stdout(&o));
}

#[test]
fn explain_names_the_layers_of_this_host() {
    let s = Scratch::new("explain");
    let pol = policy(
        &s,
        "  process:\n    deny: [{path: /usr/bin/curl, id: no-curl}]\n",
    );
    let o = Command::new(palisade())
        .args(["policy", "explain", "--host"])
        .arg(&pol)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    // This kernel refuses BPF LSM programs: the fallbacks carry the rule.
    assert!(
        text.contains("[rule no-curl; enforced by landlock, exec-guard]"),
        "{text}"
    );
    assert!(!text.contains("bpf-lsm]"), "{text}");
}

#[test]
fn mining_pool_egress_is_denied_while_the_allowed_service_stays_reachable() {
    let _g = serial();
    let s = Scratch::new("egress");
    listen("127.0.0.2:3333");
    listen("127.0.0.1:8080");
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "connect", "127.0.0.2:3333"]),
        "connect to the pool",
    );
    let pol = policy(
        &s,
        "  network:\n    egress:\n      default: deny\n      allow: [{cidr: 127.0.0.1/32, ports: [8080], protocol: tcp, id: app}]\n",
    );
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "connect", "127.0.0.2:3333"]),
        "connect to the pool",
    );
    assert_works(
        &run_confined(&s, Some(&pol), &[], &[&p, "connect", "127.0.0.1:8080"]),
        "connect to the app",
    );
    // IPv4-mapped IPv6 is the same destination.
    assert_denied(
        &run_confined(
            &s,
            Some(&pol),
            &[],
            &[&p, "connect", "[::ffff:127.0.0.2]:3333"],
        ),
        "v4-mapped connect",
    );
    let events = s.events();
    let ev = find(&events, "denial", "target", "127.0.0.2:3333").expect("network denial");
    assert_eq!(ev["layer"], "cgroup-sock");
    assert_eq!(ev["operation"], "network");
    assert_eq!(ev["rule_id"], "network.egress.default");
    assert!(find(&events, "denial", "target", "127.0.0.1:8080").is_none());
}

#[test]
fn udp_to_a_denied_address_is_refused() {
    let _g = serial();
    let s = Scratch::new("udp");
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "sendto", "127.0.0.3:5353"]),
        "sendto",
    );
    let pol = policy(&s, "  network:\n    egress:\n      deny: [{cidr: 127.0.0.3/32, protocol: udp, id: exfil-dns}]\n");
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "sendto", "127.0.0.3:5353"]),
        "sendto",
    );
    assert_works(
        &run_confined(&s, Some(&pol), &[], &[&p, "sendto", "127.0.0.4:5353"]),
        "sendto elsewhere",
    );
    let events = s.events();
    let ev = find(&events, "denial", "rule_id", "exfil-dns").expect("udp denial");
    assert_eq!(ev["access"], "sendmsg");
    assert_eq!(ev["target"], "127.0.0.3:5353");
}

#[test]
fn raw_sockets_are_refused() {
    let _g = serial();
    let s = Scratch::new("raw");
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "raw-socket"]),
        "raw socket",
    );
    let pol = policy(&s, "  network: {rawSockets: deny}\n");
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "raw-socket"]),
        "raw socket",
    );
    let events = s.events();
    let ev = find(&events, "denial", "rule_id", "network.rawSockets").expect("raw socket denial");
    assert_eq!(ev["target"], "raw socket");
}

fn setuid_copy(s: &Scratch) -> String {
    let suid = s.path("suid-probe");
    std::fs::copy(probe(), &suid).unwrap();
    nix::unistd::chown(
        &suid,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    suid.display().to_string()
}

#[test]
fn a_setuid_root_binary_no_longer_makes_a_user_root() {
    let _g = serial();
    let s = Scratch::new("suid");
    let suid = setuid_copy(&s);
    // Without Palisade: nobody runs the setuid-root binary and is root.
    use std::os::unix::process::CommandExt;
    let bare = Command::new(&suid)
        .arg("euid")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        stdout(&bare).contains("EUID 0"),
        "baseline: {}",
        stdout(&bare)
    );
    // no_new_privs alone: the exec happens, the uid change does not.
    let nnp = policy(&s, "  privileges: {noNewPrivileges: true}\n");
    let o = run_confined(&s, Some(&nnp), &["--user", "65534"], &[&suid, "euid"]);
    assert!(stdout(&o).contains("EUID 65534"), "{}", stdout(&o));
    // blockSetuid: the exec of a set-id file is stopped and reported.
    let block = policy(
        &s,
        "  privileges: {noNewPrivileges: true, blockSetuid: true}\n",
    );
    let o = run_confined(&s, Some(&block), &["--user", "65534"], &[&suid, "euid"]);
    assert_eq!(o.status.code(), Some(137), "{}", stdout(&o));
    let events = s.events();
    let ev = find(&events, "denial", "operation", "setuid").expect("setuid event");
    assert_eq!(ev["layer"], "exec-guard");
    assert_eq!(ev["rule_id"], "privileges.blockSetuid");
    assert_eq!(ev["uid"], 65534);
}

#[test]
fn root_cannot_switch_to_another_user_under_block_setuid() {
    let _g = serial();
    let s = Scratch::new("setuid");
    let p = probe_str();
    assert_works(
        &run_confined(&s, None, &[], &[&p, "setuid", "65534"]),
        "setuid",
    );
    let pol = policy(&s, "  privileges: {blockSetuid: true}\n");
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "setuid", "65534"]),
        "setuid",
    );
    let events = s.events();
    let ev = find(&events, "denial", "operation", "setuid").expect("setuid event");
    assert_eq!(ev["layer"], "seccomp");
    assert_eq!(ev["target"], "setresuid");
}

#[test]
fn denied_syscalls_fail_with_eperm_and_are_reported() {
    let _g = serial();
    let s = Scratch::new("ptrace");
    let p = probe_str();
    assert_works(&run_confined(&s, None, &[], &[&p, "ptrace"]), "ptrace");
    let pol = policy(
        &s,
        "  syscalls:\n    profile: runtime/default\n    deny: [{name: ptrace, id: no-debugger}]\n",
    );
    assert_denied(
        &run_confined(&s, Some(&pol), &[], &[&p, "ptrace"]),
        "ptrace",
    );
    let events = s.events();
    let ev = find(&events, "denial", "rule_id", "no-debugger").expect("seccomp event");
    assert_eq!(ev["layer"], "seccomp");
}

#[test]
fn audit_mode_allows_and_logs() {
    let _g = serial();
    let s = Scratch::new("audit");
    listen("127.0.0.2:3333");
    let p = probe_str();
    let pol = policy(&s, "  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, ports: [3333], id: mining-pool}]\n");
    assert_works(
        &run_confined(
            &s,
            Some(&pol),
            &["--audit"],
            &[&p, "connect", "127.0.0.2:3333"],
        ),
        "audited connect",
    );
    let events = s.events();
    let ev = find(&events, "audit", "rule_id", "mining-pool").expect("audit event");
    assert_eq!(ev["action"], "audit");
    assert_eq!(ev["result"], "allowed");
}

#[test]
fn processes_outside_the_workload_are_unaffected() {
    let _g = serial();
    let s = Scratch::new("outside");
    listen("127.0.0.2:3333");
    let p = probe_str();
    let out = s.path("outcome").display().to_string();
    let pol = policy(
        &s,
        "  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32}]\n",
    );
    let mut child = Command::new(palisade())
        .args(["run", "--id", "outside-test", "--policy"])
        .arg(&pol)
        .arg("--events")
        .arg(s.path("events.jsonl"))
        .arg("--state-dir")
        .arg(s.path("state"))
        .args(["--", &p, "later", "300", "127.0.0.2:3333", &out])
        .spawn()
        .unwrap();
    wait_for(
        || std::fs::read_to_string(&out).is_ok(),
        "the confined probe to try",
    );
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("DENIED"));
    // Same destination, from this (unconfined) test process, while the workload runs.
    assert!(std::net::TcpStream::connect("127.0.0.2:3333").is_ok());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "SIGTERM forwarded to the workload"
    );
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_supervisor_leaves_the_workload_confined_and_gc_releases_it() {
    let _g = serial();
    let before = count_kernel_objects();
    let s = Scratch::new("sigkill");
    listen("127.0.0.2:3333");
    let p = probe_str();
    let out = s.path("outcome").display().to_string();
    let pol = policy(
        &s,
        "  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, id: pool}]\n",
    );
    let mut supervisor = Command::new(palisade())
        .args(["run", "--id", "sigkill-test", "--policy"])
        .arg(&pol)
        .arg("--events")
        .arg(s.path("events.jsonl"))
        .arg("--state-dir")
        .arg(s.path("state"))
        .args(["--", &p, "later", "1500", "127.0.0.2:3333", &out])
        .spawn()
        .unwrap();
    wait_for(
        || find(&s.events(), "confined", "container_id", "sigkill-test").is_some(),
        "the confined event",
    );
    // The event is written before the spawn: wait for the workload itself.
    wait_for(
        || {
            std::fs::read_to_string("/sys/fs/cgroup/unified/palisade/sigkill-test/cgroup.procs")
                .is_ok_and(|p| !p.trim().is_empty())
        },
        "the workload in its cgroup",
    );
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    wait_for(
        || std::fs::read_to_string(&out).is_ok(),
        "the orphaned probe to try",
    );
    assert!(
        std::fs::read_to_string(&out).unwrap().starts_with("DENIED"),
        "the workload must stay confined after its supervisor died"
    );
    // Kill the orphan; gc then releases what the dead supervisor could not.
    let cgroup = PathBuf::from("/sys/fs/cgroup/unified/palisade/sigkill-test");
    std::fs::write(cgroup.join("cgroup.kill"), "1").unwrap();
    wait_for(
        || {
            std::fs::read_to_string(cgroup.join("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        },
        "the workload to exit",
    );
    let gc = Command::new(palisade())
        .arg("gc")
        .arg("--state-dir")
        .arg(s.path("state"))
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(stdout(&gc).contains("released sigkill-test"));
    assert_eq!(
        count_kernel_objects(),
        before,
        "gc left kernel objects behind"
    );
}

#[test]
fn nothing_is_left_behind_after_runs_and_failed_starts() {
    let _g = serial();
    let before = count_kernel_objects();
    let s = Scratch::new("leaks");
    let p = probe_str();
    let pol = policy(
        &s,
        &format!("  process:\n    default: deny\n    allow: [{{path: {p}}}]\n  network:\n    egress:\n      deny: [{{cidr: 127.0.0.2/32}}]\n  privileges: {{blockSetuid: true}}\n"),
    );
    for _ in 0..3 {
        run_confined(&s, Some(&pol), &[], &[&p, "euid"]);
    }
    // A start that fails after the cgroup exists: the command does not exist.
    let o = run_confined(&s, Some(&pol), &[], &["/nonexistent/binary"]);
    assert!(!o.status.success());
    // A policy this host cannot carry under strict enforcement never creates anything.
    let file_audit = policy(
        &s,
        "  file:\n    rules: [{path: /etc/shadow, access: [read], action: audit}]\n",
    );
    let o = run_confined(&s, Some(&file_audit), &[], &[&p, "euid"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("needs one of [bpf-lsm]") && err.contains("EPERM"),
        "{err}"
    );
    assert_eq!(count_kernel_objects(), before);
    // The host probe's record (cache/) is kept for the boot on purpose; workload state is not.
    let left: Vec<String> = std::fs::read_dir(s.path("state"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache")
        .collect();
    assert!(left.is_empty(), "state files left: {left:?}");
}
