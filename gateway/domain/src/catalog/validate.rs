//! Catalog validation: every problem, each with the key path it concerns.

use std::collections::{BTreeMap, BTreeSet};

use super::{instance_type, instance_type_names, Catalog, ParamValue, Params, RAW, RESOURCE_TYPES};
use skyport_core::config::{valid_name, ConfigError, TenantConfig};

/// Parameters whose values Skyport itself reads, and must be text.
pub const TEXT_PARAMS: &[&str] = &["image", "instance_type", "region", "provider", "zone"];

/// Parameter names: 1-63 of `[a-z0-9_]`, starting with a letter (usable in rules as
/// `params.<name>`).
pub fn valid_param_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every catalog problem in `config`: names, references between blueprints, offerings,
/// plans and tenants, locked parameters, and the values Skyport reads itself.
pub fn validate(config: &Catalog, tenants: &BTreeMap<String, TenantConfig>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });

    for (name, blueprint) in &config.blueprints {
        let at = format!("blueprints.{name}");
        if !valid_name(name) {
            err(at.clone(), "blueprint names are 1-63 of [a-z0-9-]".into());
        } else if name == RAW {
            err(
                at.clone(),
                format!("'{RAW}' is the built-in blueprint of raw requests"),
            );
        }
        if blueprint.resources.is_empty() {
            err(
                format!("{at}.resources"),
                "a blueprint needs at least one resource".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, resource) in blueprint.resources.iter().enumerate() {
            let at = format!("{at}.resources[{i}]");
            if !valid_name(&resource.name) {
                err(
                    format!("{at}.name"),
                    "resource names are 1-63 of [a-z0-9-]".into(),
                );
            } else if !seen.insert(resource.name.as_str()) {
                err(
                    format!("{at}.name"),
                    format!("'{}' is named twice", resource.name),
                );
            }
            if !RESOURCE_TYPES.contains(&resource.kind.as_str()) {
                err(
                    format!("{at}.type"),
                    format!("must be one of: {}", RESOURCE_TYPES.join(", ")),
                );
            }
            check_params(&resource.params, &format!("{at}.params"), &mut err);
        }
        check_params(&blueprint.params, &format!("{at}.params"), &mut err);
        check_params(&blueprint.defaults, &format!("{at}.defaults"), &mut err);
        for locked in &blueprint.locked {
            if !blueprint.params.contains_key(locked) {
                err(
                    format!("{at}.locked"),
                    format!("'{locked}' is locked but the blueprint does not set it in params"),
                );
            }
        }
        if let Some(separate) = &blueprint.separate {
            if separate.resources.len() < 2 {
                err(
                    format!("{at}.separate.resources"),
                    "name at least two resources to keep apart".into(),
                );
            }
            for r in &separate.resources {
                if !blueprint.resources.iter().any(|x| &x.name == r) {
                    err(
                        format!("{at}.separate.resources"),
                        format!("'{r}' is not one of the blueprint's resources"),
                    );
                }
            }
        }
    }

    for (name, offering) in &config.offerings {
        let at = format!("offerings.{name}");
        if !valid_name(name) {
            err(at.clone(), "offering names are 1-63 of [a-z0-9-]".into());
        } else if name == RAW {
            err(
                at.clone(),
                format!("'{RAW}' is the built-in offering of raw requests"),
            );
        }
        check_params(&offering.params, &format!("{at}.params"), &mut err);
        check_params(&offering.defaults, &format!("{at}.defaults"), &mut err);
        for p in &offering.user_params {
            if !valid_param_name(p) {
                err(
                    format!("{at}.user_params"),
                    format!("'{p}' is not a parameter name (1-63 of [a-z0-9_], first a letter)"),
                );
            }
        }
        let Some(blueprint) = config.blueprints.get(&offering.blueprint) else {
            err(
                format!("{at}.blueprint"),
                format!("no blueprint '{}' is defined", offering.blueprint),
            );
            continue;
        };
        for locked in &blueprint.locked {
            if offering.params.contains_key(locked) || offering.defaults.contains_key(locked) {
                err(
                    format!("{at}.params.{locked}"),
                    format!("blueprint '{}' locks '{locked}'", offering.blueprint),
                );
            }
            if offering.user_params.contains(locked) {
                err(
                    format!("{at}.user_params"),
                    format!(
                        "blueprint '{}' locks '{locked}'; callers cannot set it",
                        offering.blueprint
                    ),
                );
            }
        }
    }

    for (name, plan) in &config.plans {
        let at = format!("plans.{name}");
        if !valid_name(name) {
            err(at.clone(), "plan names are 1-63 of [a-z0-9-]".into());
        }
        for offering in &plan.offerings {
            if offering == RAW {
                err(
                    format!("{at}.offerings"),
                    format!("'{RAW}' (requests by image and instance type) is allowed by `raw = true`, not listed"),
                );
            } else if !config.offerings.contains_key(offering) {
                err(
                    format!("{at}.offerings"),
                    format!("no offering '{offering}' is defined"),
                );
            }
        }
    }

    for (id, tenant) in tenants {
        if let Some(plan) = &tenant.plan {
            if !config.plans.contains_key(plan) {
                err(
                    format!("tenants.{id}.plan"),
                    format!("no plan '{plan}' is defined"),
                );
            }
        }
    }

    if !config.budgets.is_empty() {
        let directory = skyport_core::tenancy::TenantDirectory::new(tenants.clone());
        for (name, budget) in &config.budgets {
            if let Err(message) = crate::budgets::Budget::check(budget.clone(), &directory) {
                err(format!("budgets.{name}"), message);
            }
        }
    }
    errors
}

/// Parameter names, and the values of the parameters Skyport reads itself.
fn check_params(params: &Params, at: &str, err: &mut impl FnMut(String, String)) {
    for (name, value) in params {
        if !valid_param_name(name) {
            err(
                format!("{at}.{name}"),
                "parameter names are 1-63 of [a-z0-9_], first a letter".into(),
            );
            continue;
        }
        if !TEXT_PARAMS.contains(&name.as_str()) {
            continue;
        }
        match value {
            ParamValue::Text(text) if name == "instance_type" && instance_type(text).is_none() => {
                err(
                    format!("{at}.{name}"),
                    format!(
                        "unknown instance type '{text}'; one of: {}",
                        instance_type_names().join(", ")
                    ),
                )
            }
            ParamValue::Text(text) if text.is_empty() => {
                err(format!("{at}.{name}"), "must not be empty".into())
            }
            ParamValue::Text(_) => {}
            _ => err(format!("{at}.{name}"), "must be text".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use skyport_core::config::{Config, EMBEDDED_DEFAULT};

    fn paths_of(extra: &str, edit: impl Fn(String) -> String) -> Vec<String> {
        let text = edit(format!("{EMBEDDED_DEFAULT}\n{extra}"));
        match crate::config_check::parse(&text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn the_embedded_catalog_is_valid_and_complete() {
        let config = Config::embedded();
        assert_eq!(config.tenants["demo"].plan.as_deref(), Some("standard"));
        let standard = &config.plans["standard"];
        assert!(standard.raw && standard.regions.is_empty());
        assert_eq!(standard.offerings, ["dev-vm", "prod-vm", "web-dr"]);
        let dr = &config.blueprints["web-dr"];
        assert_eq!(dr.resources.len(), 2);
        assert_eq!(
            dr.separate.as_ref().unwrap().by,
            crate::catalog::Separation::Region
        );
    }

    #[test]
    fn every_catalog_problem_is_reported_with_its_path() {
        let extra = r#"
[blueprints.pair]
resources = [{ name = "a", type = "compute" }, { name = "a", type = "storage" }]
params = { tier = "gold", instance_type = "sp.huge" }
locked = ["tier", "colour"]
separate = { resources = ["a", "b"], by = "provider" }

[offerings.pair-vm]
blueprint = "pair"
params = { tier = "silver", image = 7 }
user_params = ["tier", "Bad Name"]

[offerings.ghost]
blueprint = "nowhere"

[plans.small]
offerings = ["pair-vm", "missing"]

[offerings.raw]
blueprint = "pair"

[plans.listed-raw]
offerings = ["raw"]
"#;
        let paths = paths_of(extra, |t| {
            t.replacen("plan = \"standard\"", "plan = \"gold\"", 1)
        });
        for expected in [
            "blueprints.pair.resources[1].name",
            "blueprints.pair.resources[1].type",
            "blueprints.pair.params.instance_type",
            "blueprints.pair.locked",
            "blueprints.pair.separate.resources",
            "offerings.pair-vm.params.image",
            "offerings.pair-vm.user_params",
            "offerings.pair-vm.params.tier",
            "offerings.ghost.blueprint",
            "plans.small.offerings",
            "offerings.raw",
            "plans.listed-raw.offerings",
            "tenants.demo.plan",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn placement_rules_are_checked_at_load_with_their_paths() {
        let extra = r#"
[[placement.rules]]
name = "prod-elsewhere"
when = 'params.tier == "prod"'
exclude = { providers = ["local-vmm", "nowhere"] }

[[placement.rules]]
name = "broken"
when = 'params.tier =='
choose = { provider = "ghost" }
"#;
        assert_eq!(paths_of(extra, |t| t), ["placement.rules[1].when"]);
        let good = "[[placement.rules]]\nname = \"ok\"\nwhen = 'params.tier == \"prod\"'\nexclude = { regions = [\"local-1\"] }\n";
        assert!(paths_of(good, |t| t).is_empty());
    }

    #[test]
    fn unknown_catalog_keys_are_errors() {
        let paths = paths_of("[plans.x]\nofferings = []\ncolour = 1\n", |t| t);
        assert_eq!(paths, ["plans.x.colour"]);
    }
}
