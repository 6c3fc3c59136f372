//! Capability names as users write them (`NET_ADMIN`, `net_admin`, `CAP_NET_ADMIN`),
//! checked against the `caps` crate's list of capabilities.

use std::str::FromStr;

pub const ALL: &str = "ALL";

/// `CAP_*` upper case, `ALL` for all; `None` for a name that is no capability.
pub fn normalise(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == ALL {
        return Some(ALL.to_string());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    caps::Capability::from_str(&full).ok().map(|_| full)
}

/// Every capability the kernel headers know, as `CAP_*` names.
pub fn all() -> Vec<String> {
    caps::all().iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_spellings() {
        assert_eq!(normalise("net_admin").as_deref(), Some("CAP_NET_ADMIN"));
        assert_eq!(normalise("CAP_SYS_ADMIN").as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(normalise("all").as_deref(), Some("ALL"));
        assert_eq!(normalise("NET_FLY"), None);
        assert!(all().contains(&"CAP_BPF".to_string()));
    }
}
