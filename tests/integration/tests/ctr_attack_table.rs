//! The README's demo is the attack table through ctr, run side by side: every
//! attack works under runc and is blocked under Palisade, the allowed
//! connection works under both. Running it here also keeps the demo working.

use std::process::Command;

use palisade_integration::bin_dir;

#[test]
fn every_attack_works_under_runc_and_is_blocked_under_palisade() {
    let out = Command::new("timeout")
        .arg("300")
        .arg(bin_dir().join("palisade-demo"))
        .output()
        .expect("palisade-demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("ATTACK"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(table.len(), 11, "{text}");
    for row in &table {
        // Columns: attack (32), runc (22), palisade.
        let (runc, palisade) = (
            row.get(33..55).unwrap_or("").trim(),
            row.get(56..).unwrap_or("").trim(),
        );
        if row.starts_with("allowed") {
            assert!(runc == "works" && palisade == "works", "{row}");
        } else if row.starts_with("setuid") {
            // ctr's default spec sets no_new_privs, so under runc the setuid bit has no effect either.
            assert!(palisade.starts_with("BLOCKED"), "{row}");
        } else {
            assert!(
                runc.starts_with("works"),
                "the attack must work under runc: {row}"
            );
            assert!(
                palisade.starts_with("BLOCKED"),
                "the attack must be blocked under Palisade: {row}"
            );
        }
    }
    assert!(
        text.contains("10 of 10 attacks blocked by Palisade"),
        "{text}"
    );
}
