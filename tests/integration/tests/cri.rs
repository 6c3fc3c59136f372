//! The attack table through CRI, the path kubelet uses: a host-network pod
//! with `runtime_handler = palisade` and a pod annotation carrying the policy,
//! attacks run as ExecSync sessions (kubectl exec), side by side with runc.

use std::process::Command;

use palisade_integration::containerd::{Containerd, Shared, SharedGuard, IMAGE};
use palisade_integration::*;

fn cri() -> SharedGuard {
    static CTRD: Shared = Shared::new();
    CTRD.get(|| Containerd::start_cri("cri"))
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
    // Annotations go through a file: one argv string is limited to 128 KiB.
    let ann_file = c.dir.join(format!("annotations-{name}.json"));
    std::fs::write(&ann_file, pod_annotations).unwrap();
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
        .arg("--pod-annotations-file")
        .arg(&ann_file)
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

/// Rewrites the node config the CRI runtime handler points at (ConfigPath), for one test.
fn with_node_config<T>(
    c: &Containerd,
    extra: &str,
    policies: &[(&str, &str)],
    f: impl FnOnce() -> T,
) -> T {
    let cfg = c.dir.join("palisade.toml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    for (name, text) in policies {
        std::fs::write(c.dir.join("policies").join(format!("{name}.yaml")), text).unwrap();
    }
    std::fs::write(&cfg, format!("{original}{extra}")).unwrap();
    let out = f();
    std::fs::write(&cfg, original).unwrap();
    out
}

#[test]
fn node_default_and_baseline_apply_through_cri() {
    let c = cri();
    listen("127.0.0.2:3333");
    let default = "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: node-default}\nspec:\n  syscalls: {deny: [ptrace]}\n";
    let baseline = "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: node-baseline}\nspec:\n  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, id: baseline-pool}]\n";
    let r = with_node_config(
        &c,
        "default_policy = \"node-default\"\nbaseline_policy = \"node-baseline\"\n",
        &[("node-default", default), ("node-baseline", baseline)],
        || drive(&c, "palisade", "shop-defaults", "{}", 18084),
    );
    assert!(r.get("error").is_none(), "{r}");
    let execs = r["execs"].as_array().unwrap();
    let pool = execs
        .iter()
        .find(|e| e["cmd"][2] == "127.0.0.2:3333")
        .unwrap();
    assert_ne!(pool["exit_code"], 0, "the baseline denies the pool: {pool}");
    let cid = r["container_id"].as_str().unwrap();
    let events = c.events();
    let sources: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "confined" && e["container_id"] == cid)
        .map(|e| {
            (
                e["policy"].as_str().unwrap_or("").into(),
                e["policy_source"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("node-default".into(), "default".into())),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("node-baseline".into(), "baseline".into())),
        "{sources:?}"
    );
    let denial = events
        .iter()
        .find(|e| {
            e["kind"] == "denial" && e["container_id"] == cid && e["rule_id"] == "baseline-pool"
        })
        .expect("the baseline's denial");
    assert_eq!(denial["pod"], "shop-defaults");
}

#[test]
fn an_oversized_pod_annotation_is_refused_through_cri() {
    let c = cri();
    let big = format!("# padding\n{}", "#".repeat(300 * 1024));
    let r = drive(&c, "palisade", "shop-big", &annotations(&big), 18085);
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("annotation `palisade.dev/policy-inline` is")
            && error.contains("the limit is 262144"),
        "{r}"
    );
}
