//! `palisade check`: which kernel features this host has, and which layers follow.

use palisade_enforce::host;

pub fn check(json: bool) -> i32 {
    let h = host::detect();
    if json {
        println!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
    } else {
        println!("{:<24} {:<10} DETAIL", "FEATURE", "STATUS");
        for f in &h.features {
            println!(
                "{:<24} {:<10} {}",
                f.name,
                if f.available { "available" } else { "missing" },
                f.detail
            );
        }
        let layers: Vec<&str> = h.layers.iter().map(|l| l.name()).collect();
        println!("\nlayers on this host: {}", layers.join(", "));
    }
    if h.can_enforce() {
        0
    } else {
        eprintln!("palisade: no enforcement is possible on this host");
        1
    }
}
