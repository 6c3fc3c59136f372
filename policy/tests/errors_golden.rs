//! The messages users see for broken policies, exactly as printed.

use palisade_policy::{load_str, LoadOptions};

fn rendered(source: &str) -> Vec<String> {
    let loaded = load_str(source, &LoadOptions::default());
    loaded
        .diags
        .sorted()
        .into_iter()
        .map(|d| d.render("p.yaml"))
        .collect()
}

const HEAD: &str = "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: t}\n";

#[test]
fn three_mistakes_are_all_reported_with_line_and_column() {
    let source = format!(
        "{HEAD}spec:\n  mode: enforcing\n  file:\n    rules:\n      - {{dir: /etc/, recursve: true, access: [write], action: deny}}\n  network:\n    egress:\n      allow: [{{cidr: 10.0.0.0/33}}]\n"
    );
    assert_eq!(
        rendered(&source),
        vec![
            "p.yaml:5:9: error: spec.mode: unknown value `enforcing`\n  hint: did you mean `enforce`?",
            "p.yaml:8:22: error: spec.file.rules[0].recursve: unknown field `recursve`\n  hint: did you mean `recursive`?",
            "p.yaml:11:22: error: spec.network.egress.allow[0].cidr: `10.0.0.0/33` is not a CIDR\n  hint: write e.g. 10.96.0.0/12, 192.0.2.7/32 or 2001:db8::/32",
        ]
    );
}

#[test]
fn paths_must_be_absolute_and_normalised() {
    let source = format!(
        "{HEAD}spec:\n  file:\n    rules:\n      - {{path: etc/shadow, access: [read], action: deny}}\n      - {{path: /etc/../shadow, access: [read], action: deny}}\n"
    );
    assert_eq!(
        rendered(&source),
        vec![
            "p.yaml:7:16: error: spec.file.rules[0].path: `etc/shadow` is not an absolute path\n  hint: write an absolute path such as /usr/bin/app, with no `.` or `..`",
            "p.yaml:8:16: error: spec.file.rules[1].path: `/etc/../shadow` contains `.` or `..`\n  hint: write an absolute path such as /usr/bin/app, with no `.` or `..`",
        ]
    );
}

#[test]
fn names_must_exist() {
    let source = format!(
        "{HEAD}spec:\n  privileges:\n    capabilities: {{drop: [NET_ADMN]}}\n  syscalls:\n    deny: [ptrace, ptrac]\n"
    );
    assert_eq!(
        rendered(&source),
        vec![
            "p.yaml:6:27: error: spec.privileges.capabilities.drop[0]: unknown capability `NET_ADMN`\n  hint: did you mean `NET_ADMIN`?",
            "p.yaml:8:20: error: spec.syscalls.deny[1]: `ptrac` is not a system call on x86_64 or aarch64\n  hint: use the kernel's name, e.g. `ptrace`, `mount`, `unshare`",
        ]
    );
}

#[test]
fn ports_and_host_bits() {
    let source = format!(
        "{HEAD}spec:\n  network:\n    egress:\n      allow:\n        - {{cidr: 10.0.0.1/8, ports: [0, \"90-80\", 70000]}}\n"
    );
    let out = rendered(&source);
    assert_eq!(out.len(), 4, "{out:#?}");
    assert!(out[0].contains("`10.0.0.1/8` has host bits set\n  hint: did you mean `10.0.0.0/8`?"));
    assert!(out[1].contains("ports[0]: `0` is not a port or port range"));
    assert!(out[2].contains("ports[1]: port range `90-80` is reversed"));
    assert!(out[3].contains("ports[2]: `70000` is not a port or port range"));
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let out = rendered("apiVersion: palisade.dev/v1\nkind: [Policy\n");
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("p.yaml:3:1: error: YAML syntax:"),
        "{out:?}"
    );
}

#[test]
fn unsupported_kubearmor_fields_are_errors_not_dropped() {
    let source = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: k}\nspec:\n  process:\n    matchPatterns:\n      - pattern: /tmp/*\n    matchPaths:\n      - path: /bin/sh\n        fromSource: [{path: /bin/bash}]\n  action: Block\n";
    let out = rendered(source);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].starts_with(
        "p.yaml:6:5: error: spec.process.matchPatterns: `matchPatterns` cannot be honoured"
    ));
    assert!(out[1].starts_with("p.yaml:10:9: error: spec.process.matchPaths[0].fromSource: `fromSource` cannot be honoured"));
}

#[test]
fn oci_notify_action_is_refused() {
    let source = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}], "listenerPath": "/run/agent.sock"}"#;
    let out = rendered(source);
    assert!(
        out.iter()
            .any(|l| l.contains("SCMP_ACT_NOTIFY cannot be honoured")),
        "{out:#?}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains("`listenerPath` cannot be honoured")),
        "{out:#?}"
    );
}

#[test]
fn overlapping_rules_are_warnings() {
    let source = format!(
        "{HEAD}spec:\n  file:\n    rules:\n      - {{path: /a, access: [read], action: deny}}\n      - {{path: /a, access: [read], action: allow}}\n"
    );
    let loaded = load_str(&source, &LoadOptions::default());
    assert!(!loaded.diags.has_errors());
    let warnings: Vec<_> = loaded.diags.warnings().map(|d| d.message.clone()).collect();
    assert_eq!(
        warnings,
        vec!["`/a` has conflicting rules; on a tie deny wins"]
    );
}

#[test]
fn limits_are_enforced() {
    let long = format!("/{}", "a".repeat(5000));
    let source = format!("{HEAD}spec:\n  process:\n    deny: [{{path: {long}}}]\n");
    let out = rendered(&source);
    assert!(
        out[0].contains("path is 5001 bytes long; the limit is 4096"),
        "{out:?}"
    );
}
