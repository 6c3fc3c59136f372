//! The attack table through CRI, the path kubelet uses: a host-network pod
//! with `runtime_handler = palisade` and a pod annotation carrying the policy,
//! attacks run as ExecSync sessions (kubectl exec), side by side with runc.

use std::process::Command;
use std::sync::{Mutex, OnceLock};

use palisade_integration::containerd::{Containerd, IMAGE};
use palisade_integration::*;

fn cri() -> std::sync::MutexGuard<'static, Containerd> {
    static CTRD: OnceLock<Mutex<Containerd>> = OnceLock::new();
    CTRD.get_or_init(|| Mutex::new(Containerd::start_cri("cri")))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The entrypoint is the app itself (a listener); only it may run.
const POLICY: &str = "apiVersion: palisade.dev/v1
kind: Policy
metadata: {name: cri-web}
spec:
  process:
    default: deny
    allow: [{path: /usr/local/bin/app}]
  file:
    rules:
      - {path: /etc/shadow, access: [read], action: deny, id: shadow}
      - {dir: /etc/, recursive: true, access: [write], action: deny, id: etc-readonly}
      - {dir: /var/run/secrets/, recursive: true, access: [read], action: deny, id: secrets}
  network:
    egress:
      default: deny
      allow: [{cidr: 127.0.0.1/32, ports: [8080], protocol: tcp, id: backend}]
  privileges: {noNewPrivileges: true, blockSetuid: true}
";

const ATTACKS: &[(&str, &[&str])] = &[
    ("shadow read", &["app", "read", "/etc/shadow"]),
    ("sudoers write", &["app", "write", "/etc/sudoers"]),
    (
        "secret read (exfiltration, step 1)",
        &["app", "read", "/var/run/secrets/token"],
    ),
    (
        "payload spawns a shell",
        &["app", "exec", "/bin/sh", "-c", "true"],
    ),
    ("payload runs recon (id)", &["app", "exec", "/bin/id"]),
    ("mining pool", &["app", "connect", "127.0.0.2:3333"]),
    ("lateral movement", &["app", "connect", "127.0.0.1:8081"]),
    (
        "exfiltration egress (step 2)",
        &["app", "sendto", "127.0.0.3:53"],
    ),
    ("kubectl exec of a shell", &["sh", "-c", "echo pwned"]),
];

fn drive(c: &Containerd, handler: &str, name: &str, pod_annotations: &str, port: u16) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cri/cri_driver.py");
    let log_dir = c.dir.join(format!("logs-{name}"));
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "python3"])
        .arg(script)
        .arg("--socket")
        .arg(&c.socket)
        .args([
            "--handler",
            handler,
            "--name",
            name,
            "--namespace",
            "shop",
            "--image",
            IMAGE,
        ])
        .args(["--pod-annotations", pod_annotations])
        .args([
            "--cmd",
            &format!("[\"app\", \"listen\", \"127.0.0.1:{port}\"]"),
        ])
        .arg("--log-dir")
        .arg(&log_dir);
    for (_, argv) in ATTACKS {
        cmd.arg("--exec").arg(serde_json::to_string(argv).unwrap());
    }
    let out = cmd
        .output()
        .expect("python3 cri_driver.py (pip install container-runtime-interface-api)");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output: {e}\nstdout {}\nstderr {}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn annotations(policy: &str) -> String {
    serde_json::json!({"palisade.dev/policy-inline": policy}).to_string()
}

#[test]
fn the_attack_table_works_under_runc_and_fails_under_palisade() {
    let c = cri();
    for addr in ["127.0.0.2:3333", "127.0.0.1:8080", "127.0.0.1:8081"] {
        listen(addr);
    }
    let before = count_kernel_objects();
    let runc = drive(&c, "runc", "shop-runc", &annotations(POLICY), 18081);
    assert!(runc.get("error").is_none(), "{runc}");
    for ((name, _), r) in ATTACKS.iter().zip(runc["execs"].as_array().unwrap()) {
        assert_eq!(r["exit_code"], 0, "under runc `{name}` works: {r}");
    }
    eprintln!("runc pod timings: {}", runc["timings"]);
    let pal = drive(&c, "palisade", "shop-palisade", &annotations(POLICY), 18082);
    eprintln!("palisade pod timings: {}", pal["timings"]);
    assert!(pal.get("error").is_none(), "{pal}");
    for ((name, _), r) in ATTACKS.iter().zip(pal["execs"].as_array().unwrap()) {
        assert_ne!(r["exit_code"], 0, "under Palisade `{name}` must fail: {r}");
    }
    let events = c.events();
    let cid = pal["container_id"].as_str().unwrap();
    let denials: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "denial" && e["container_id"] == cid)
        .collect();
    for rule in [
        "shadow",
        "etc-readonly",
        "secrets",
        "process.default",
        "network.egress.default",
    ] {
        let ev = denials
            .iter()
            .find(|e| e["rule_id"] == rule)
            .unwrap_or_else(|| panic!("no denial for {rule}: {denials:#?}"));
        assert_eq!(ev["pod"], "shop-palisade", "{ev}");
        assert_eq!(ev["pod_namespace"], "shop", "{ev}");
        assert_eq!(ev["container_name"], "app", "{ev}");
        assert_eq!(ev["policy"], "cri-web", "{ev}");
        assert_eq!(ev["sandbox_id"], pal["sandbox_id"], "{ev}");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        count_kernel_objects(),
        before,
        "a pod lifecycle left kernel objects behind"
    );
}

#[test]
fn audit_mode_through_cri_allows_and_logs() {
    let c = cri();
    for addr in ["127.0.0.2:3333", "127.0.0.1:8080", "127.0.0.1:8081"] {
        listen(addr);
    }
    // File rules can be audited only by BPF LSM: best-effort lists them as skipped on this host.
    let audit = POLICY.replace(
        "spec:\n",
        "spec:\n  mode: audit\n  enforcement: best-effort\n",
    );
    let r = drive(&c, "palisade", "shop-audit", &annotations(&audit), 18083);
    assert!(r.get("error").is_none(), "{r}");
    let execs = r["execs"].as_array().unwrap();
    let pool = execs
        .iter()
        .find(|e| e["cmd"][2] == "127.0.0.2:3333")
        .unwrap();
    assert_eq!(pool["exit_code"], 0, "audit mode blocks nothing: {pool}");
    let events = c.events();
    let cid = r["container_id"].as_str().unwrap();
    let ev = events
        .iter()
        .find(|e| {
            e["kind"] == "audit" && e["container_id"] == cid && e["target"] == "127.0.0.2:3333"
        })
        .expect("audit event for the pool connection");
    assert_eq!(ev["result"], "allowed");
    assert_eq!(ev["pod"], "shop-audit");
    let confined = events
        .iter()
        .find(|e| e["kind"] == "confined" && e["container_id"] == cid)
        .expect("confined event");
    let skipped = confined["skipped"].to_string();
    assert!(
        skipped.contains("shadow") && skipped.contains("bpf-lsm"),
        "{confined}"
    );
}
