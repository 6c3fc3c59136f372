//! The README's demo: a private containerd starts the same attacks twice,
//! under runc and under Palisade, and prints what was blocked and the events.
//! Loopback only: the "mining pool" and the backend are listeners started here.

use std::process::Command;

use palisade_integration::containerd::{
    build_image, build_named_image, Containerd, IMAGE, IMAGE_NOBODY,
};
use palisade_integration::{listen, stdout};

const POLICY: &str = r#"apiVersion: palisade.dev/v1
kind: Policy
metadata: {name: demo-web}
spec:
  process:
    default: deny
    allow: [{path: /usr/local/bin/app}, {path: /usr/local/bin/suid-helper}]
  file:
    rules:
      - {path: /etc/shadow, access: [read, write], action: deny, id: shadow, severity: 9}
      - {dir: /etc/, recursive: true, access: [write], action: deny, id: etc-readonly}
      - {dir: /var/run/secrets/, recursive: true, access: [read], action: deny, id: secrets, tags: [MITRE-T1552]}
  network:
    rawSockets: deny
    egress:
      default: deny
      allow: [{cidr: 127.0.0.1/32, ports: [8080], protocol: tcp, id: backend}]
  privileges:
    noNewPrivileges: true
    blockSetuid: true
    capabilities: {drop: [ALL]}
  syscalls:
    profile: runtime/default
    deny: [{name: ptrace, id: no-debugger}]
"#;

struct Attack {
    name: &'static str,
    cmd: &'static [&'static str],
    /// Run from the image configured with `User: 65534`.
    as_nobody: bool,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "read /etc/shadow",
        cmd: &["app", "read", "/etc/shadow"],
        as_nobody: false,
    },
    Attack {
        name: "write /etc/sudoers",
        cmd: &["app", "write", "/etc/sudoers"],
        as_nobody: false,
    },
    Attack {
        name: "read a mounted secret",
        cmd: &["app", "read", "/var/run/secrets/token"],
        as_nobody: false,
    },
    Attack {
        name: "payload spawns a shell",
        cmd: &["app", "exec", "/bin/sh", "-c", "true"],
        as_nobody: false,
    },
    Attack {
        name: "cryptojacking 127.0.0.2:3333",
        cmd: &["app", "connect", "127.0.0.2:3333"],
        as_nobody: false,
    },
    Attack {
        name: "lateral movement :8081",
        cmd: &["app", "connect", "127.0.0.1:8081"],
        as_nobody: false,
    },
    Attack {
        name: "UDP exfiltration",
        cmd: &["app", "sendto", "127.0.0.3:53"],
        as_nobody: false,
    },
    Attack {
        name: "raw socket",
        cmd: &["app", "raw-socket"],
        as_nobody: false,
    },
    Attack {
        name: "setuid-root binary as nobody",
        cmd: &["suid-helper", "euid"],
        as_nobody: true,
    },
    Attack {
        name: "ptrace",
        cmd: &["app", "ptrace"],
        as_nobody: false,
    },
    Attack {
        name: "allowed: backend :8080",
        cmd: &["app", "connect", "127.0.0.1:8080"],
        as_nobody: false,
    },
];

/// The errno a refused call reported, by name, from the probe's last words.
fn errno_name(text: &str) -> String {
    let reason = text.split(':').next_back().unwrap_or("").trim();
    let reason = reason.split(" (os error").next().unwrap_or(reason);
    match reason {
        "Permission denied" => "EACCES".to_string(),
        "Operation not permitted" => "EPERM".to_string(),
        other => other.chars().take(24).collect(),
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("palisade-demo: run as root (containerd, cgroups, BPF)");
        std::process::exit(1);
    }
    for addr in ["127.0.0.2:3333", "127.0.0.1:8080", "127.0.0.1:8081"] {
        listen(addr);
    }
    println!("Starting a private containerd and importing a busybox test image...");
    let c = Containerd::start("demo");
    let archive = build_image(&c.dir, None);
    c.import_image(&archive);
    c.import_image(&build_named_image(
        &c.dir,
        IMAGE_NOBODY,
        Some("65534:65534"),
        None,
    ));

    println!("\n{:<32} {:<22} {:<22}", "ATTACK", "runc", "palisade");
    println!("{:<32} {:<22} {:<22}", "------", "----", "--------");
    let mut blocked = 0;
    let mut attacks = 0;
    for (i, a) in ATTACKS.iter().enumerate() {
        let extra = ["--net-host"];
        let image = if a.as_nobody { IMAGE_NOBODY } else { IMAGE };
        let runc = c.run_image(
            "io.containerd.runc.v2",
            image,
            &format!("demo-runc-{i}"),
            &[],
            &extra,
            a.cmd,
        );
        let pal = c.run_image(
            palisade_integration::containerd::RUNTIME,
            image,
            &format!("demo-{i}"),
            &[("palisade.dev/policy-inline", POLICY)],
            &extra,
            a.cmd,
        );
        let describe = |o: &std::process::Output| {
            let text = stdout(o);
            if text.contains("EUID 0") {
                "works (euid 0)".to_string()
            } else if text.contains("EUID 65534") {
                // ctr's default spec already sets no_new_privs; under CRI it does not.
                "no effect (nnp)".to_string()
            } else if o.status.success() {
                "works".to_string()
            } else {
                match o.status.code() {
                    Some(137) => "BLOCKED (killed)".to_string(),
                    _ => format!("BLOCKED ({})", errno_name(&text)),
                }
            }
        };
        let (r, p) = (describe(&runc), describe(&pal));
        if !a.name.starts_with("allowed") {
            attacks += 1;
            if p.starts_with("BLOCKED") {
                blocked += 1;
            }
        }
        println!("{:<32} {:<22} {:<22}", a.name, r, p);
    }
    println!(
        "\nEvidence (palisade events, one JSON line per denial in {}):",
        c.events_path().display()
    );
    let out = Command::new(palisade_integration::palisade())
        .args(["events", "--events"])
        .arg(c.events_path())
        .output()
        .expect("palisade events");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("\n{blocked} of {attacks} attacks blocked by Palisade; the allowed backend connection still works.");
    if blocked != attacks {
        std::process::exit(1);
    }
}
