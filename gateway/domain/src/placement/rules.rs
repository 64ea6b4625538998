//! Administrator rules: an ordered list of CEL conditions over a resource's parameter set,
//! each with an action given as data: exclude providers or regions, or choose a provider,
//! a region and the native configuration (the instance type).
//!
//! Conditions read only the parameter set (`params.tier == "prod"`), so the whole list is
//! evaluated once per resource, whatever the number of candidates; the actions are then
//! applied to the candidates as data. A rule fires only when its condition yields `true`;
//! any other outcome (an error, a non-boolean) is recorded, logged and counted, and the
//! rule does not fire.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use serde::Serialize;

use super::params::ParamSet;
use crate::catalog::{ParamValue, RESOURCE_TYPES};
use skyport_core::config::ConfigError;
pub use skyport_core::config::{ChooseAction, ExcludeAction, RuleConfig};

/// One environment for every rule: building the standard library costs tens of
/// microseconds, binding it to a context a few nanoseconds.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A rule ready to run.
#[derive(Debug)]
struct CompiledRule {
    config: RuleConfig,
    condition: Program,
}

/// The administrators' rules, compiled, in order.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
}

/// What a rule did in one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleFiring {
    /// The rule.
    pub rule: String,
    /// `exclude`, `choose` or `error`.
    pub effect: RuleEffect,
    /// For an error, what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a rule's firing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    /// Its exclusions apply.
    Exclude,
    /// It chose where the resource goes.
    Choose,
    /// Its condition did not yield a boolean.
    Error,
}

/// The rules' verdict on one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// Every rule that fired or failed, in order.
    pub fired: Vec<RuleFiring>,
    /// Excluded providers, each with the first rule that excluded it.
    #[serde(skip)]
    pub excluded_providers: Vec<(String, String)>,
    /// Excluded regions, each with the first rule that excluded it.
    #[serde(skip)]
    pub excluded_regions: Vec<(String, String)>,
    /// The first choose that fired, with its rule.
    #[serde(skip)]
    pub chosen: Option<(String, ChooseAction)>,
}

impl RuleOutcome {
    /// Why a candidate at `provider`/`region` is out, if a rule put it out.
    pub fn verdict(&self, provider: &str, region: &str) -> Option<String> {
        if let Some((_, rule)) = self.excluded_providers.iter().find(|(p, _)| p == provider) {
            return Some(format!("excluded by rule '{rule}'"));
        }
        if let Some((_, rule)) = self.excluded_regions.iter().find(|(r, _)| r == region) {
            return Some(format!("excluded by rule '{rule}'"));
        }
        let (rule, choose) = self.chosen.as_ref()?;
        if let Some(p) = choose.provider.as_deref().filter(|p| *p != provider) {
            return Some(format!("rule '{rule}' chose provider '{p}'"));
        }
        choose
            .region
            .as_deref()
            .filter(|r| *r != region)
            .map(|r| format!("rule '{rule}' chose region '{r}'"))
    }

    /// The rules that fired with an error.
    pub fn errors(&self) -> impl Iterator<Item = &RuleFiring> {
        self.fired.iter().filter(|f| f.effect == RuleEffect::Error)
    }
}

/// The longest condition, in characters.
pub const MAX_CONDITION_CHARS: usize = 2048;
/// The deepest nesting of brackets in a condition, and the longest run of unary
/// operators (`!`, `-`).
pub const MAX_CONDITION_DEPTH: usize = 32;

/// Refuses a condition the CEL parser would recurse into too deeply: its parser recurses
/// once per bracket and unary operator, so a deeply nested condition (found by the
/// `cel_rules` fuzz target) would overflow the stack of whoever loads it.
fn within_parser_limits(when: &str) -> Result<(), String> {
    let chars = when.chars().count();
    if chars > MAX_CONDITION_CHARS {
        return Err(format!(
            "the condition has {chars} characters; at most {MAX_CONDITION_CHARS}"
        ));
    }
    let (mut depth, mut deepest, mut unary, mut longest_unary) = (0usize, 0, 0usize, 0);
    for c in when.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if matches!(c, '!' | '-') {
            unary += 1;
            longest_unary = longest_unary.max(unary);
        } else if !c.is_whitespace() {
            unary = 0;
        }
    }
    if deepest > MAX_CONDITION_DEPTH || longest_unary > MAX_CONDITION_DEPTH {
        return Err(format!(
            "the condition nests more than {MAX_CONDITION_DEPTH} deep (brackets or unary operators)"
        ));
    }
    Ok(())
}

impl RuleSet {
    /// Compiles `rules`, or says what is wrong with each, by key path under `at`.
    pub fn compile(rules: &[RuleConfig], at: &str) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
        for (i, rule) in rules.iter().enumerate() {
            let here = format!("{at}[{i}]");
            if !skyport_core::config::valid_name(&rule.name) {
                err(
                    format!("{here}.name"),
                    "rule names are 1-63 of [a-z0-9-]".into(),
                );
            } else if rules[..i].iter().any(|r| r.name == rule.name) {
                err(
                    format!("{here}.name"),
                    format!("'{}' is named twice", rule.name),
                );
            }
            for t in &rule.types {
                if !RESOURCE_TYPES.contains(&t.as_str()) {
                    err(
                        format!("{here}.types"),
                        format!(
                            "'{t}' is not a resource type; one of: {}",
                            RESOURCE_TYPES.join(", ")
                        ),
                    );
                }
            }
            match (&rule.exclude, &rule.choose) {
                (None, None) => err(
                    here.clone(),
                    "a rule needs an action: exclude or choose".into(),
                ),
                (Some(_), Some(_)) => err(
                    here.clone(),
                    "a rule either excludes or chooses, not both".into(),
                ),
                (Some(x), None) if x.providers.is_empty() && x.regions.is_empty() => err(
                    format!("{here}.exclude"),
                    "name providers or regions to exclude".into(),
                ),
                (None, Some(c))
                    if c.provider.is_none() && c.region.is_none() && c.instance_type.is_none() =>
                {
                    err(
                        format!("{here}.choose"),
                        "choose a provider, a region or an instance type".into(),
                    )
                }
                _ => {}
            }
            if let Some(t) = rule
                .choose
                .as_ref()
                .and_then(|c| c.instance_type.as_deref())
            {
                if crate::catalog::instance_type(t).is_none() {
                    err(
                        format!("{here}.choose.instance_type"),
                        format!(
                            "unknown instance type '{t}'; one of: {}",
                            crate::catalog::instance_type_names().join(", ")
                        ),
                    );
                }
            }
            if let Err(why) = within_parser_limits(&rule.when) {
                err(format!("{here}.when"), why);
                continue;
            }
            match ENV.compile(&rule.when) {
                Ok(condition) => {
                    let references = condition.references();
                    let unknown: Vec<&str> = references
                        .variables()
                        .into_iter()
                        .filter(|v| *v != "params")
                        .collect();
                    if unknown.is_empty() {
                        compiled.push(CompiledRule {
                            config: rule.clone(),
                            condition,
                        });
                    } else {
                        err(
                            format!("{here}.when"),
                            format!(
                                "conditions read only `params`; unknown: {}",
                                unknown.join(", ")
                            ),
                        );
                    }
                }
                Err(e) => err(
                    format!("{here}.when"),
                    format!("not a CEL expression: {}", e.to_string().trim()),
                ),
            }
        }
        if errors.is_empty() {
            Ok(Self { rules: compiled })
        } else {
            Err(errors)
        }
    }

    /// Providers the rules name (to exclude or choose), for a startup check against the
    /// loaded ones.
    pub fn named_providers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules.iter().flat_map(|r| {
            let name = r.config.name.as_str();
            let excluded = r.config.exclude.iter().flat_map(|x| x.providers.iter());
            let chosen = r.config.choose.iter().flat_map(|c| c.provider.iter());
            excluded.chain(chosen).map(move |p| (name, p.as_str()))
        })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules that apply to a resource of type `kind` ordered through `offering`,
    /// in order, over `params`. `open` are the candidates still in the running (provider,
    /// region) before any rule. Two kinds of rule cannot change the decision and are not
    /// evaluated: an exclusion that names no candidate still in the running, and a choice
    /// after an earlier rule has chosen.
    pub fn evaluate(
        &self,
        kind: &str,
        offering: &str,
        params: &ParamSet,
        open: &[(&str, &str)],
    ) -> RuleOutcome {
        let mut outcome = RuleOutcome::default();
        let applicable = |r: &&CompiledRule| {
            (r.config.types.is_empty() || r.config.types.iter().any(|t| t == kind))
                && (r.config.offerings.is_empty()
                    || r.config.offerings.iter().any(|o| o == offering))
        };
        if !self.rules.iter().any(|r| applicable(&r)) {
            return outcome;
        }
        let mut running: Vec<bool> = vec![true; open.len()];
        let hits = |exclude: &ExcludeAction, (provider, region): (&str, &str)| {
            exclude.providers.iter().any(|p| p == provider)
                || exclude.regions.iter().any(|r| r == region)
        };
        let context = bind(params);
        for rule in self.rules.iter().filter(applicable) {
            let moot = match &rule.config.exclude {
                Some(exclude) => !open
                    .iter()
                    .zip(&running)
                    .any(|(&site, &still)| still && hits(exclude, site)),
                None => outcome.chosen.is_some(),
            };
            if moot {
                continue;
            }
            let name = &rule.config.name;
            let failure = match rule.condition.execute(&context) {
                Ok(Value::Bool(true)) => None,
                Ok(Value::Bool(false)) => continue,
                Ok(other) => Some(format!("the condition gave {other:?}, not true or false")),
                Err(e) => Some(e.to_string()),
            };
            let effect = match (&failure, &rule.config.exclude) {
                (Some(_), _) => RuleEffect::Error,
                (None, Some(exclude)) => {
                    for (&site, still) in open.iter().zip(running.iter_mut()) {
                        if hits(exclude, site) {
                            *still = false;
                        }
                    }
                    for p in &exclude.providers {
                        outcome.excluded_providers.push((p.clone(), name.clone()));
                    }
                    for r in &exclude.regions {
                        outcome.excluded_regions.push((r.clone(), name.clone()));
                    }
                    RuleEffect::Exclude
                }
                (None, None) => {
                    let choose = rule.config.choose.clone().unwrap_or_default();
                    outcome.chosen = Some((name.clone(), choose));
                    RuleEffect::Choose
                }
            };
            outcome.fired.push(RuleFiring {
                rule: name.clone(),
                effect,
                error: failure,
            });
        }
        outcome
    }
}

/// A context with the parameter set bound twice: as the map `params` (for `has()` and
/// iteration) and as one variable `params.<name>` per parameter, which CEL resolves first
/// and about twice as fast as a select on the map.
fn bind(params: &ParamSet) -> Context<'static, 'static> {
    let mut context = Context::with_env(Arc::clone(&ENV));
    let mut map = HashMap::with_capacity(params.len());
    for (name, param) in params.iter() {
        let value = match &param.value {
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::Int(i) => Value::Int(*i),
            ParamValue::Text(t) => Value::String(Arc::new(t.clone())),
        };
        context.add_variable_from_value(format!("params.{name}"), value.clone());
        map.insert(name.to_string(), value);
    }
    context.add_variable_from_value("params", map);
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Params;
    use crate::placement::params::ParamSet;

    fn rule(name: &str, when: &str, exclude: Option<&[&str]>, choose: Option<&str>) -> RuleConfig {
        RuleConfig {
            name: name.into(),
            description: String::new(),
            types: Vec::new(),
            offerings: Vec::new(),
            when: when.into(),
            exclude: exclude.map(|ps| ExcludeAction {
                providers: ps.iter().map(|p| p.to_string()).collect(),
                regions: Vec::new(),
            }),
            choose: choose.map(|p| ChooseAction {
                provider: Some(p.into()),
                ..Default::default()
            }),
        }
    }

    fn set(pairs: &[(&str, ParamValue)]) -> ParamSet {
        let params: Params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ParamSet::from_params(&params)
    }

    fn text(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    #[test]
    fn rules_fire_in_order_the_first_choose_wins_and_excludes_accumulate() {
        let rules = RuleSet::compile(
            &[
                rule(
                    "no-laptop",
                    "params.tier == 'prod'",
                    Some(&["local-vmm"]),
                    None,
                ),
                rule("big-on-euca", "params.cpus >= 4", None, Some("euca")),
                rule("also-choose", "true", None, Some("ec2")),
                rule("never", "params.tier == 'dev'", Some(&["ec2"]), None),
                rule(
                    "moot",
                    "params.missing == 1",
                    Some(&["local-vmm", "gone"]),
                    None,
                ),
                rule("typo", "params.colour == 'red'", Some(&["x"]), None),
                rule("not-bool", "params.cpus + 1", Some(&["x"]), None),
            ],
            "placement.rules",
        )
        .unwrap();
        let open = [
            ("local-vmm", "local-1"),
            ("euca", "euca-1"),
            ("ec2", "r"),
            ("x", "x-1"),
        ];
        let out = rules.evaluate(
            "compute",
            "prod-vm",
            &set(&[("tier", text("prod")), ("cpus", ParamValue::Int(8))]),
            &open,
        );
        let effects: Vec<_> = out
            .fired
            .iter()
            .map(|f| (f.rule.as_str(), f.effect))
            .collect();
        assert_eq!(
            effects,
            [
                ("no-laptop", RuleEffect::Exclude),
                ("big-on-euca", RuleEffect::Choose),
                ("typo", RuleEffect::Error),
                ("not-bool", RuleEffect::Error),
            ]
        );
        assert_eq!(
            out.verdict("local-vmm", "local-1").as_deref(),
            Some("excluded by rule 'no-laptop'")
        );
        assert_eq!(
            out.verdict("ec2", "r").as_deref(),
            Some("rule 'big-on-euca' chose provider 'euca'")
        );
        assert_eq!(out.verdict("euca", "euca-1"), None);
        assert_eq!(out.errors().count(), 2);
    }

    #[test]
    fn types_and_offerings_guard_rules_and_has_works_on_the_map() {
        let mut only_dev = rule("only-dev", "!has(params.zone)", Some(&["a"]), None);
        only_dev.offerings = vec!["dev-vm".into()];
        let rules = RuleSet::compile(&[only_dev], "r").unwrap();
        let params = set(&[("tier", text("dev"))]);
        let open = [("a", "a-1")];
        assert_eq!(
            rules
                .evaluate("compute", "dev-vm", &params, &open)
                .fired
                .len(),
            1
        );
        assert!(rules
            .evaluate("compute", "prod-vm", &params, &open)
            .fired
            .is_empty());
        assert!(rules
            .evaluate("compute", "dev-vm", &params, &[("b", "b-1")])
            .fired
            .is_empty());
    }

    #[test]
    fn bad_rules_are_reported_with_their_paths() {
        let mut both = rule("both", "true", Some(&["a"]), Some("b"));
        both.types = vec!["storage".into()];
        let mut bad_type = rule("bad-type", "true", None, None);
        bad_type.choose = Some(ChooseAction {
            instance_type: Some("sp.huge".into()),
            ..Default::default()
        });
        let errors = RuleSet::compile(
            &[
                both,
                rule("none", "true", None, None),
                rule("syntax", "params.tier ==", Some(&["a"]), None),
                rule("stranger", "candidate.kind == 'x'", Some(&["a"]), None),
                rule("syntax", "true", Some(&["a"]), None),
                bad_type,
            ],
            "placement.rules",
        )
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "placement.rules[0].types",
                "placement.rules[0]",
                "placement.rules[1]",
                "placement.rules[2].when",
                "placement.rules[3].when",
                "placement.rules[4].name",
                "placement.rules[5].choose.instance_type",
            ]
        );
    }

    /// Found by the `cel_rules` fuzz target: a condition nested about 85 brackets deep
    /// overflowed the parser's stack (a crash of whoever loads the configuration or the
    /// catalog). Such conditions are refused by name before they reach the parser.
    #[test]
    fn deeply_nested_conditions_are_refused_before_the_parser() {
        let nested = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        let unary = format!("{}true", "!".repeat(200));
        let long = format!("params.tier == \"{}\"", "x".repeat(3000));
        let when_errors = |when: &str| -> Vec<String> {
            RuleSet::compile(&[rule("deep", when, Some(&["local-vmm"]), None)], "r")
                .err()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.path == "r[0].when")
                .map(|e| e.message)
                .collect()
        };
        for when in [nested, unary, long] {
            let errors = when_errors(&when);
            assert!(
                errors
                    .iter()
                    .any(|m| m.contains("at most") || m.contains("nests")),
                "{errors:?}"
            );
        }
        let fine = format!("{}true{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(when_errors(&fine), Vec::<String>::new());
    }
}
