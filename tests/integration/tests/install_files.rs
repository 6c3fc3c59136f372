//! What node operators install: the containerd drop-ins load in containerd,
//! and the Kubernetes manifests validate (offline, strict).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn containerd_1x_loads_the_drop_in() {
    let dir = std::env::temp_dir().join(format!("palisade-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let main = dir.join("config.toml");
    std::fs::write(
        &main,
        format!(
            "version = 2\nimports = [\"{}\"]\nroot = \"{1}/root\"\nstate = \"{1}/state\"\n[grpc]\n  address = \"{1}/c.sock\"\n",
            repo().join("containerd-config/containerd-1.x.toml").display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new("containerd")
        .arg("--config")
        .arg(&main)
        .args(["config", "dump"])
        .output()
        .expect("containerd");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let section = text
        .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.palisade]")
        .nth(1)
        .expect("the palisade runtime is in containerd's merged config");
    let section = &section[..section
        .find("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]")
        .unwrap_or(section.len())];
    assert!(
        section.contains("runtime_type = \"io.containerd.palisade.v2\""),
        "{section}"
    );
    assert!(
        section.contains("pod_annotations = [\"palisade.dev/*\"]"),
        "{section}"
    );
    assert!(
        section.contains("container_annotations = [\"palisade.dev/*\"]"),
        "{section}"
    );
    assert!(
        section.contains("ConfigPath = \"/etc/palisade/config.toml\""),
        "{section}"
    );
}

#[test]
fn containerd_2x_drop_in_has_the_v3_layout() {
    // No containerd 2 on this machine: check the document against the v3 key layout.
    let text =
        std::fs::read_to_string(repo().join("containerd-config/containerd-2.x.toml")).unwrap();
    let doc: toml::Table = text.parse().expect("valid TOML");
    assert_eq!(doc["version"].as_integer(), Some(3));
    let rt = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["palisade"];
    assert_eq!(
        rt["runtime_type"].as_str(),
        Some("io.containerd.palisade.v2")
    );
    assert_eq!(rt["pod_annotations"][0].as_str(), Some("palisade.dev/*"));
    assert_eq!(
        rt["options"]["ConfigPath"].as_str(),
        Some("/etc/palisade/config.toml")
    );
}

#[test]
fn the_node_config_example_is_accepted_by_the_shim() {
    let text =
        std::fs::read_to_string(repo().join("containerd-config/palisade-config.toml")).unwrap();
    let doc: toml::Table = text.parse().expect("valid TOML");
    let known = [
        "policy_dir",
        "default_policy",
        "baseline_policy",
        "require_policy",
        "allow_audit_mode",
        "events_path",
        "state_dir",
    ];
    for key in doc.keys() {
        assert!(known.contains(&key.as_str()), "unknown key {key}");
    }
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    for file in ["runtimeclass.yaml", "installer.yaml"] {
        let path = repo().join("containerd-config").join(file);
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", "1.30"])
            .arg(&path)
            .output()
            .expect("kubernetes-validate (pip install kubernetes-validate; .ci/run installs it)");
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
