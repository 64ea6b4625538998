//! The whole configuration check: the schema's own ([`Config::check`]) and what only the
//! layers above it can judge: the catalog's references and values, and the placement
//! rules (their CEL must compile). Every command that loads a configuration comes here,
//! so that a file is accepted or refused the same way by `skyport serve` and by
//! `skyport config check`.

use std::path::Path;

use skyport_core::config::{Config, ConfigErrors};

/// Reads and checks configuration file `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    parse(&skyport_core::config::read(path)?)
}

/// Parses and checks configuration text; every problem is reported, each with its key
/// path.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let config = Config::from_toml(text)?;
    let mut errors = config.check();
    errors.extend(crate::catalog::validate(
        &crate::catalog::Catalog::from_config(&config),
        &config.tenants,
    ));
    for (alias, target) in &config.ec2.instance_type_aliases {
        if crate::catalog::instance_type(target).is_none() {
            errors.push(skyport_core::config::ConfigError {
                path: format!("ec2.instance_type_aliases.{alias}"),
                message: format!(
                    "'{target}' is not a Skyport instance type; choose one of {}",
                    crate::catalog::instance_type_names().join(", ")
                ),
            });
        }
    }
    errors.extend(crate::budgets::duplicate_names(&config.budgets));
    if let Err(rule_errors) =
        crate::placement::rules::RuleSet::compile(&config.placement.rules, "placement.rules")
    {
        errors.extend(rule_errors);
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyport_core::config::EMBEDDED_DEFAULT;

    #[test]
    fn the_embedded_default_passes_the_whole_check() {
        assert!(parse(EMBEDDED_DEFAULT).is_ok());
    }

    #[test]
    fn an_instance_type_alias_must_name_a_skyport_type() {
        let text = format!(
            "{EMBEDDED_DEFAULT}\n[ec2.instance_type_aliases]\n\"t3.micro\" = \"sp.micro\"\n\"m5.huge\" = \"sp.giant\"\n"
        );
        let errors = parse(&text).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "ec2.instance_type_aliases.m5.huge");
        assert!(
            errors[0].message.contains("sp.micro"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn schema_catalog_and_rule_problems_are_reported_together() {
        let text = EMBEDDED_DEFAULT.replace("log_format = \"text\"", "log_format = \"xml\"")
            + "\n[[placement.rules]]\nname = \"broken\"\nwhen = \"params.tier ==\"\n";
        let errors = parse(&text).unwrap_err().0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"server.log_format"), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.starts_with("placement.rules")),
            "{paths:?}"
        );
    }
}
