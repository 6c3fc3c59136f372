//! Shipped examples validate; printing a policy and parsing it back gives the same policy.

use std::path::Path;

use palisade_policy::model::*;
use palisade_policy::{emit::to_yaml, load_file, load_str, LoadOptions};
use proptest::prelude::*;

#[test]
fn every_example_is_valid_and_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let loaded = load_file(&path).unwrap();
        assert!(
            !loaded.diags.has_errors(),
            "{}: {:#?}",
            path.display(),
            loaded.diags.items
        );
        for p in &loaded.policies {
            p.compile().unwrap();
            // Converted output is itself a valid Palisade policy with the same meaning.
            let printed = to_yaml(&p.policy).unwrap();
            let back = load_str(&printed, &LoadOptions::default());
            assert!(
                !back.diags.has_errors(),
                "{}:\n{printed}\n{:#?}",
                path.display(),
                back.diags.items
            );
            assert_eq!(back.policies[0].policy, p.policy, "{printed}");
        }
        seen += 1;
    }
    assert!(seen >= 8);
}

fn meta() -> impl Strategy<Value = RuleMeta> {
    (
        proptest::option::of("[a-z][a-z0-9-]{0,8}"),
        proptest::option::of(1u8..=10),
        proptest::collection::vec("[A-Z]{1,4}-T[0-9]{4}", 0..2),
    )
        .prop_map(|(id, severity, tags)| RuleMeta {
            id,
            message: None,
            severity,
            tags,
        })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        "(/[a-z]{1,6}){1,4}".prop_map(|path| Target::Path { path }),
        ("(/[a-z]{1,6}){1,3}", any::<bool>()).prop_map(|(d, recursive)| Target::Dir {
            dir: format!("{d}/"),
            recursive
        }),
    ]
}

fn access() -> impl Strategy<Value = Vec<Access>> {
    proptest::sample::subsequence(vec![Access::Read, Access::Write, Access::Exec], 1..=3)
}

fn policy() -> impl Strategy<Value = Policy> {
    let file_rules = proptest::collection::vec(
        (
            target(),
            access(),
            prop_oneof![
                Just(RuleAction::Allow),
                Just(RuleAction::Deny),
                Just(RuleAction::Audit)
            ],
            meta(),
        )
            .prop_map(|(target, access, action, meta)| FileRule {
                target,
                access,
                action,
                meta,
            }),
        0..5,
    );
    let proc_rules = proptest::collection::vec(
        (target(), meta()).prop_map(|(target, meta)| ProcessRule {
            target,
            audit: false,
            meta,
        }),
        0..4,
    );
    let net_rules = proptest::collection::vec(
        (
            any::<[u8; 4]>(),
            8u8..=32,
            proptest::collection::vec((1u16..1000, 0u16..50), 0..3),
            prop_oneof![
                Just(Protocol::Tcp),
                Just(Protocol::Udp),
                Just(Protocol::Any)
            ],
        )
            .prop_map(|(a, len, ports, protocol)| NetRule {
                cidr: ipnet::IpNet::new(std::net::IpAddr::from(a), len)
                    .unwrap()
                    .trunc(),
                ports: {
                    let mut p: Vec<_> = ports
                        .into_iter()
                        .map(|(f, w)| PortRange {
                            first: f,
                            last: f + w,
                        })
                        .collect();
                    p.sort();
                    p.dedup();
                    p
                },
                protocol,
                audit: false,
                meta: RuleMeta::default(),
            }),
        0..4,
    );
    (
        file_rules,
        proc_rules,
        net_rules,
        any::<bool>(),
        proptest::collection::vec(
            prop_oneof![Just("ptrace"), Just("mount"), Just("bpf")],
            0..3,
        ),
    )
        .prop_map(|(file, allow, net, audit, deny)| {
            let mut deny: Vec<_> = deny
                .into_iter()
                .map(|n| SyscallRule {
                    name: n.into(),
                    meta: RuleMeta::default(),
                })
                .collect();
            deny.dedup();
            Policy {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                metadata: Metadata {
                    name: "generated".into(),
                },
                spec: Spec {
                    mode: if audit { Mode::Audit } else { Mode::Enforce },
                    enforcement: Enforcement::Strict,
                    process: Some(ProcessSection {
                        default: DefaultAction::Deny,
                        allow,
                        deny: Vec::new(),
                        // Both spellings round-trip: absent, and an explicit allow.
                        anonymous_exec: audit.then_some(DefaultAction::Allow),
                    }),
                    file: Some(FileSection { rules: file }),
                    network: Some(NetworkSection {
                        egress: Some(Egress {
                            default: DefaultAction::Deny,
                            allow: net,
                            deny: Vec::new(),
                        }),
                        raw_sockets: DefaultAction::Deny,
                    }),
                    privileges: Some(Privileges {
                        no_new_privileges: Some(true),
                        block_setuid: audit,
                        capabilities: Some(Capabilities {
                            drop: vec!["ALL".into()],
                            add: vec!["CAP_NET_BIND_SERVICE".into()],
                        }),
                    }),
                    syscalls: Some(SyscallSection {
                        profile: Some(ProfileRef::Named(RUNTIME_DEFAULT.into())),
                        deny,
                    }),
                },
            }
        })
}

fn has_unique_ids(p: &Policy) -> bool {
    let mut ids: Vec<_> = p
        .spec
        .file
        .iter()
        .flat_map(|f| &f.rules)
        .filter_map(|r| r.meta.id.clone())
        .chain(
            p.spec
                .process
                .iter()
                .flat_map(|s| &s.allow)
                .filter_map(|r| r.meta.id.clone()),
        )
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    n == ids.len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn print_then_parse_gives_the_same_policy(p in policy()) {
        prop_assume!(has_unique_ids(&p));
        let printed = to_yaml(&p).unwrap();
        let back = load_str(&printed, &LoadOptions::default());
        prop_assert!(!back.diags.has_errors(), "{}\n{:#?}", printed, back.diags.items);
        prop_assert_eq!(&back.policies[0].policy, &p);
    }

    #[test]
    fn digest_is_invariant_under_rule_reordering(p in policy(), seed in any::<u64>()) {
        prop_assume!(has_unique_ids(&p));
        let mut shuffled = p.clone();
        if let Some(f) = shuffled.spec.file.as_mut() { let n = f.rules.len(); if n > 1 { f.rules.rotate_left((seed as usize) % n); f.rules.reverse(); } }
        if let Some(e) = shuffled.spec.network.as_mut().and_then(|n| n.egress.as_mut()) { e.allow.reverse(); }
        if let Some(s) = shuffled.spec.process.as_mut() { s.allow.reverse(); }
        let a = palisade_policy::compile(&p, &Default::default());
        let b = palisade_policy::compile(&shuffled, &Default::default());
        match (a, b) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.digest, b.digest),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "one compiled, one did not: {:?} {:?}", a.is_ok(), b.is_ok()),
        }
    }
}
