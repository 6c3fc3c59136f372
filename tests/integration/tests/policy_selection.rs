//! Which policy a container gets on a node: annotations, the node default,
//! the baseline that always applies, require_policy, allow_audit_mode, and
//! bad input refused with its reason. Node configs reach the shim through
//! containerd's runtime option ConfigPath (`ctr run --runtime-config-path`).

use std::path::PathBuf;

use palisade_integration::containerd::{
    build_image, build_named_image, Containerd, Shared, SharedGuard, IMAGE, RUNTIME,
};

const LABELLED: &str = "docker.io/library/palisade-labelled:latest";
use palisade_integration::*;

fn ctrd() -> SharedGuard {
    static CTRD: Shared = Shared::new();
    CTRD.get(|| {
        let c = Containerd::start("select");
        c.import_image(&build_image(&c.dir, None));
        c.import_image(&build_named_image(
            &c.dir,
            LABELLED,
            None,
            Some("from-label"),
        ));
        c
    })
}

fn policy(name: &str, spec: &str) -> String {
    format!("apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

/// A node config in its own directory, with these policies in its policy_dir.
fn node(c: &Containerd, name: &str, extra: &str, policies: &[(&str, String)]) -> PathBuf {
    let dir = c.dir.join(format!("node-{name}"));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for (file, text) in policies {
        std::fs::write(dir.join("policies").join(format!("{file}.yaml")), text).unwrap();
    }
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "policy_dir = \"{0}/policies\"\nevents_path = \"{1}\"\nstate_dir = \"{2}\"\n{extra}",
            dir.display(),
            c.events_path().display(),
            c.state_dir().display()
        ),
    )
    .unwrap();
    cfg
}

fn run(
    c: &Containerd,
    cfg: &std::path::Path,
    id: &str,
    annotations: &[(&str, &str)],
    cmd: &[&str],
) -> std::process::Output {
    let cfg = cfg.display().to_string();
    c.run(
        id,
        annotations,
        &["--net-host", "--runtime-config-path", &cfg],
        cmd,
    )
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn confined<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "confined" && e["container_id"] == id)
        .collect()
}

#[test]
fn the_node_default_applies_when_no_annotation_names_a_policy() {
    let c = ctrd();
    let cfg = node(
        &c,
        "default",
        "default_policy = \"node-default\"\n",
        &[(
            "node-default",
            policy("node-default", "  syscalls: {deny: [ptrace]}\n"),
        )],
    );
    let o = run(&c, &cfg, "sel-default", &[], &["probe", "ptrace"]);
    assert!(
        !o.status.success(),
        "the default policy denies ptrace: {}",
        stdout(&o)
    );
    let events = c.events();
    let conf = confined(&events, "sel-default");
    assert_eq!(conf.len(), 1);
    assert_eq!(conf[0]["policy"], "node-default");
    assert_eq!(conf[0]["policy_source"], "default");
    // An annotation takes precedence over the default.
    let own = policy("own", "  mode: enforce\n");
    let o = run(
        &c,
        &cfg,
        "sel-annotated",
        &[("palisade.dev/policy-inline", &own)],
        &["probe", "ptrace"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let events = c.events();
    let conf = confined(&events, "sel-annotated");
    assert_eq!(conf[0]["policy"], "own");
    assert_eq!(conf[0]["policy_source"], "annotation");
}

#[test]
fn the_baseline_still_denies_what_a_permissive_workload_policy_allows() {
    let c = ctrd();
    listen("127.0.0.2:3333");
    let baseline = policy(
        "baseline",
        "  network:\n    egress:\n      deny: [{cidr: 127.0.0.2/32, id: baseline-pool}]\n",
    );
    let cfg = node(
        &c,
        "baseline",
        "baseline_policy = \"baseline\"\n",
        &[("baseline", baseline)],
    );
    let permissive = policy("permissive", "  network:\n    rawSockets: allow\n    egress:\n      default: allow\n      allow: [{cidr: 127.0.0.2/32, ports: [3333], id: reopen}]\n");
    let o = run(
        &c,
        &cfg,
        "sel-baseline",
        &[("palisade.dev/policy-inline", &permissive)],
        &["probe", "connect", "127.0.0.2:3333"],
    );
    assert!(
        !o.status.success() && stdout(&o).contains("DENIED"),
        "{}",
        stdout(&o)
    );
    let events = c.events();
    let conf = confined(&events, "sel-baseline");
    let names: Vec<_> = conf
        .iter()
        .map(|e| {
            (
                e["policy"].as_str().unwrap_or(""),
                e["policy_source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        names.contains(&("permissive", "annotation")) && names.contains(&("baseline", "baseline")),
        "{names:?}"
    );
    let denial = events
        .iter()
        .find(|e| e["kind"] == "denial" && e["container_id"] == "sel-baseline")
        .expect("denial");
    assert_eq!(denial["policy"], "baseline");
    assert_eq!(denial["rule_id"], "baseline-pool");
}

#[test]
fn require_policy_refuses_a_container_without_one() {
    let c = ctrd();
    let cfg = node(&c, "require", "require_policy = true\n", &[]);
    let o = run(&c, &cfg, "sel-require", &[], &["true"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("this node requires a policy (require_policy = true)"),
        "{}",
        err(&o)
    );
}

#[test]
fn audit_mode_can_be_forbidden_by_the_node() {
    let c = ctrd();
    let cfg = node(&c, "noaudit", "allow_audit_mode = false\n", &[]);
    let audit = policy("audit-me", "  mode: audit\n");
    let o = run(
        &c,
        &cfg,
        "sel-audit",
        &[("palisade.dev/policy-inline", &audit)],
        &["true"],
    );
    assert!(!o.status.success());
    assert!(
        err(&o).contains("asks for audit mode, which this node does not allow"),
        "{}",
        err(&o)
    );
}

#[test]
fn policies_are_found_by_name_and_by_digest() {
    let c = ctrd();
    let text = policy("by-name", "  syscalls: {deny: [ptrace]}\n");
    let cfg = node(&c, "names", "", &[("web", text.clone())]);
    let digest = {
        use std::process::Command;
        let out = Command::new("sha256sum")
            .arg(cfg.parent().unwrap().join("policies/web.yaml"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    for (id, value) in [
        ("sel-name", "web".to_string()),
        ("sel-digest", format!("sha256:{digest}")),
    ] {
        let o = run(
            &c,
            &cfg,
            id,
            &[("palisade.dev/policy", &value)],
            &["probe", "ptrace"],
        );
        assert!(!o.status.success(), "{id}: ptrace should be denied");
        let events = c.events();
        assert_eq!(confined(&events, id)[0]["policy"], "by-name", "{id}");
    }
}

#[test]
fn bad_input_is_refused_with_its_reason_and_nothing_runs() {
    let c = ctrd();
    let cfg = node(&c, "bad", "", &[]);
    let inline = policy("x", "  mode: enforce\n");
    // (container id, annotations, what the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "bad-name",
            vec![("palisade.dev/policy", "missing".into())],
            "no policy `missing`",
        ),
        (
            "bad-digest",
            vec![("palisade.dev/policy", format!("sha256:{}", "a".repeat(64)))],
            "has digest sha256:",
        ),
        (
            "bad-both",
            vec![
                ("palisade.dev/policy", "x".into()),
                ("palisade.dev/policy-inline", inline.clone()),
            ],
            "both `palisade.dev/policy` and `palisade.dev/policy-inline` are set",
        ),
        (
            "bad-yaml",
            vec![(
                "palisade.dev/policy-inline",
                "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: y}\nspec: [unclosed\n"
                    .into(),
            )],
            "annotation palisade.dev/policy-inline:",
        ),
    ];
    for (id, ann, want) in cases {
        let refs: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = run(&c, &cfg, id, &refs, &["true"]);
        assert!(!o.status.success(), "{id} should not start");
        assert!(err(&o).contains(want), "{id}: {}", err(&o));
    }
    // An unreadable policy directory (here: not a directory at all).
    let broken = c.dir.join("node-broken.toml");
    std::fs::write(
        &broken,
        format!(
            "policy_dir = \"/etc/hostname\"\nevents_path = \"{}\"\nstate_dir = \"{}\"\n",
            c.events_path().display(),
            c.state_dir().display()
        ),
    )
    .unwrap();
    let o = run(
        &c,
        &broken,
        "bad-dir",
        &[("palisade.dev/policy", "web")],
        &["true"],
    );
    assert!(
        err(&o).contains("cannot read the policy directory /etc/hostname"),
        "{}",
        err(&o)
    );
    // A config with an unknown key fails the shim's start.
    let typo = c.dir.join("node-typo.toml");
    std::fs::write(&typo, "polcy_dir = \"/x\"\n").unwrap();
    let o = run(&c, &typo, "bad-config", &[], &["true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("unknown field `polcy_dir`"), "{}", err(&o));
    let tasks = c.ctr(&["tasks", "ls", "-q"]);
    assert!(
        !stdout(&tasks).contains("bad-"),
        "nothing may be left running: {}",
        stdout(&tasks)
    );
}

#[test]
fn status_shows_policy_digest_and_source_of_running_containers() {
    let c = ctrd();
    let baseline = policy("base", "  syscalls: {deny: [ptrace]}\n");
    let cfg = node(
        &c,
        "status",
        "baseline_policy = \"base\"\n",
        &[("base", baseline)],
    );
    let own = policy("own-status", "  mode: enforce\n");
    let cfg_s = cfg.display().to_string();
    let ann = format!("palisade.dev/policy-inline={own}");
    let o = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        &cfg_s,
        "--annotation",
        &ann,
        IMAGE,
        "sel-status",
        "sleep",
        "600",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let status = std::process::Command::new(palisade())
        .args(["status", "--state-dir"])
        .arg(c.state_dir())
        .output()
        .unwrap();
    let text = stdout(&status);
    let _ = c.ctr(&["tasks", "kill", "-s", "SIGKILL", "sel-status"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = c.ctr(&["tasks", "delete", "sel-status"]);
    let _ = c.ctr(&["containers", "delete", "sel-status"]);
    let own_line = text
        .lines()
        .find(|l| l.contains("sel-status") && l.contains("own-status"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        own_line.contains("annotation")
            && own_line.contains("sha256:")
            && own_line.contains("running"),
        "{own_line}"
    );
    let base_line = text
        .lines()
        .find(|l| l.contains("sel-status") && l.contains(" base "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(base_line.contains("baseline"), "{base_line}");
}

#[test]
fn an_image_label_selects_the_policy_between_annotation_and_default() {
    let c = ctrd();
    let cfg = node(
        &c,
        "label",
        "default_policy = \"node-default\"\n",
        &[
            (
                "from-label",
                policy("from-label", "  syscalls: {deny: [ptrace]}\n"),
            ),
            ("node-default", policy("node-default", "  mode: enforce\n")),
        ],
    );
    let cfg_s = cfg.display().to_string();
    // The label beats the node default...
    let o = c.run_image(
        RUNTIME,
        LABELLED,
        "sel-label",
        &[],
        &["--runtime-config-path", &cfg_s],
        &["probe", "ptrace"],
    );
    assert!(
        !o.status.success(),
        "the labelled policy denies ptrace: {}",
        err(&o)
    );
    let events = c.events();
    let conf = confined(&events, "sel-label");
    assert_eq!(conf[0]["policy"], "from-label");
    assert_eq!(conf[0]["policy_source"], "label");
    // ...and an annotation beats the label.
    let own = policy("own-over-label", "  mode: enforce\n");
    let o = c.run_image(
        RUNTIME,
        LABELLED,
        "sel-label-ann",
        &[("palisade.dev/policy-inline", &own)],
        &["--runtime-config-path", &cfg_s],
        &["probe", "ptrace"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let events = c.events();
    assert_eq!(
        confined(&events, "sel-label-ann")[0]["policy"],
        "own-over-label"
    );
}

#[test]
fn a_policy_changed_between_validation_and_use_is_refused() {
    // The shim records the digest it validated; the runtime helper recompiles
    // the stored copy and refuses to build anything if the digest differs.
    let dir = std::env::temp_dir().join(format!("palisade-digest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.yaml");
    std::fs::write(&file, policy("changed", "  syscalls: {deny: [ptrace]}\n")).unwrap();
    let validated = format!("sha256:{}", "0".repeat(64));
    let out = std::process::Command::new(palisade())
        .args([
            "palisade-runtime",
            "create",
            "--id",
            "digest-test",
            "--root",
        ])
        .arg(&dir)
        .args(["--bundle", "/nonexistent", "--policy"])
        .arg(&file)
        .args(["--digest", &validated])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let e = err(&out);
    assert!(
        e.contains(&format!(
            "policy digest changed between validation ({validated}) and use (sha256:"
        )),
        "{e}"
    );
}
