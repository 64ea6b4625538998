//! Placement rules: an administrator's CEL condition is compiled when the configuration or
//! catalog is loaded and evaluated on every order. Any condition text is compiled or
//! refused with an error naming the rule; a compiled one evaluates over any parameters to
//! true, false or a rule error shown in the decision; never a panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use skyport_core::config::RuleConfig;
use skyport_core::config::{ParamValue, Params};
use skyport_domain::placement::params::ParamSet;
use skyport_domain::placement::rules::RuleSet;

#[derive(Debug, Arbitrary)]
struct Input {
    when: String,
    params: Vec<(String, Value)>,
}

#[derive(Debug, Arbitrary)]
enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
}

fuzz_target!(|input: Input| {
    let rule: RuleConfig = serde_json::from_value(serde_json::json!({
        "name": "fuzzed",
        "when": input.when,
    }))
    .expect("a rule");
    let Ok(rules) = RuleSet::compile(&[rule], "placement.rules") else {
        return;
    };
    let mut params = Params::new();
    for (name, value) in input.params.into_iter().take(8) {
        let value = match value {
            Value::Bool(b) => ParamValue::Bool(b),
            Value::Int(i) => ParamValue::Int(i),
            Value::Text(t) => ParamValue::Text(t),
        };
        params.insert(name, value);
    }
    for name in ["tier", "region", "cpus"] {
        params
            .entry(name.to_string())
            .or_insert(ParamValue::Text("prod".into()));
    }
    let outcome = rules.evaluate(
        "compute",
        "dev-vm",
        &ParamSet::from_params(&params),
        &[("local-vmm", "local-1"), ("ec2", "us-east-1")],
    );
    assert!(outcome.fired.len() <= 1, "one rule fired more than once");
});
