//! Actions Skyport does not serve, named in the access log and the
//! `skyport_ec2_unsupported_actions` metric, so that operators see what clients want.
//!
//! Names come from callers, so they are bounded: a name that does not look like an EC2
//! action (ASCII letters and digits, at most 64) and any name past the first
//! [`MAX_NAMES`] distinct ones are reported as [`OTHER`]. Templates live for the process
//! (log and metric labels are `&'static str`), at most [`MAX_NAMES`] of them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Distinct unsupported action names remembered.
pub(crate) const MAX_NAMES: usize = 256;

/// The template of every unsupported action past the bound, or not shaped like one.
pub(crate) const OTHER: &str = "ec2:(unsupported action)";

/// The log template of unsupported action `name`: `ec2:<name> (unsupported)`.
pub(crate) fn template(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return OTHER;
    }
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(template) = names.get(name) {
        return template;
    }
    if names.len() >= MAX_NAMES {
        return OTHER;
    }
    let template: &'static str = Box::leak(format!("ec2:{name} (unsupported)").into_boxed_str());
    names.insert(name.to_string(), template);
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_once_and_bounded() {
        let first = template("DescribeAddressesX");
        assert_eq!(first, "ec2:DescribeAddressesX (unsupported)");
        assert!(std::ptr::eq(first, template("DescribeAddressesX")));
        assert_eq!(template("Bad Name"), OTHER);
        assert_eq!(template(&"A".repeat(65)), OTHER);
        for n in 0..MAX_NAMES + 10 {
            template(&format!("Flood{n}"));
        }
        assert_eq!(template("NeverSeenBeforeXyz"), OTHER);
        assert_eq!(first, template("DescribeAddressesX"), "earlier names stay");
    }
}
