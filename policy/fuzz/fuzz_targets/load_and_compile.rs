//! Any byte string: loading, compiling, explaining and printing never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::{load_str, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = load_str(text, &LoadOptions::default());
    for d in loaded.diags.items.iter() {
        let _ = d.render("fuzz.yaml");
    }
    for p in &loaded.policies {
        if let Ok(plan) = p.compile() {
            let _ = palisade_policy::explain::explain(&plan, None);
            let _ = plan.seccomp_filters(&Default::default(), true);
        }
        let _ = palisade_policy::emit::to_yaml(&p.policy);
    }
});
