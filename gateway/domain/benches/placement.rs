//! Placement decision time: one order gathered over the five decision points, 100
//! administrator rules (CEL) run over its parameter set, 10 provider regions filtered,
//! priced and ranked, one picked. The rate card's prices are given (asking the metering
//! plugin is a plugin call, measured by the `plugin_call` bench). The same decision with no
//! rules is the baseline, measured in the same run.
//!
//! Run: `cargo bench -p skyport-domain --bench placement`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use skyport_domain::catalog::{
    BlueprintConfig, OfferingConfig, ParamValue, Params, ResourceConfig,
};
use skyport_domain::placement::engine::{self, Ranked, Site};
use skyport_domain::placement::params::{gather, Order};
use skyport_domain::placement::rates::Prices;
use skyport_domain::placement::rules::{ChooseAction, ExcludeAction, RuleConfig, RuleSet};

const PROVIDERS: usize = 10;
const DECISIONS: usize = 20_000;

fn text(s: &str) -> ParamValue {
    ParamValue::Text(s.into())
}

/// 100 rules of the shapes operators write: equality on a parameter, numeric comparison,
/// membership, `has()`, conjunctions and disjunctions; about one in ten fires for the
/// benchmark's orders.
///
/// With `firing` false the same shapes compare against values no order has, so no rule
/// fires, none is skipped as moot, and all 100 conditions run: the worst case.
fn rules(n: usize, firing: bool) -> Vec<RuleConfig> {
    let tier = if firing { "prod" } else { "gold" };
    let class = if firing { "batch" } else { "stream" };
    (0..n)
        .map(|i| {
            let when = match i % 5 {
                0 => format!(r#"params.tier == "{tier}" && params.cpus >= {}"#, 2 + i % 7),
                1 => format!(r#"params.department == "dept-{i}" || params.tenant == "t-{i}""#),
                2 => format!(r#"params.offering_class in ["{class}", "c-{i}"]"#),
                3 => format!(r#"!has(params.zone) && params.tier == "z-{i}""#),
                _ => format!(r#"params.memory_mib > {} && params.premium"#, 1024 + i * 64),
            };
            let provider = format!("p{}", i % PROVIDERS);
            let (exclude, choose) = if i % 10 == 9 {
                (
                    None,
                    Some(ChooseAction {
                        provider: Some(provider),
                        ..Default::default()
                    }),
                )
            } else {
                (
                    Some(ExcludeAction {
                        providers: vec![provider],
                        regions: Vec::new(),
                    }),
                    None,
                )
            };
            RuleConfig {
                name: format!("rule-{i}"),
                description: String::new(),
                types: vec!["compute".into()],
                offerings: Vec::new(),
                when,
                exclude,
                choose,
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(label: &str, rule_count: usize, firing: bool) -> (Duration, Duration) {
    let rules = RuleSet::compile(&rules(rule_count, firing), "bench").expect("rules compile");
    let blueprint = BlueprintConfig {
        description: String::new(),
        resources: vec![ResourceConfig {
            name: "vm".into(),
            kind: "compute".into(),
            params: Params::new(),
        }],
        params: Params::from([("tier".to_string(), text("standard"))]),
        locked: Vec::new(),
        defaults: Params::from([
            ("image".to_string(), text("skyport-tiny")),
            ("instance_type".to_string(), text("sp.micro")),
        ]),
        separate: None,
    };
    let offering = OfferingConfig {
        description: String::new(),
        blueprint: "single-vm".into(),
        params: Params::from([
            ("tier".to_string(), text("prod")),
            ("offering_class".to_string(), text("batch")),
        ]),
        defaults: Params::from([("cpus".to_string(), ParamValue::Int(2))]),
        user_params: vec!["instance_type".into(), "memory_mib".into()],
        lease: None,
        requires_approval: false,
    };
    let sites: Vec<Site> = (0..PROVIDERS)
        .map(|i| Site {
            provider: format!("p{i}"),
            region: format!("r{i}"),
            unhealthy: None,
        })
        .collect();
    let prices = Prices {
        currency: Some("USD".into()),
        by_provider: (0..PROVIDERS)
            .map(|i| {
                (
                    format!("p{i}"),
                    format!("0.0{}", 10 + (i * 7) % 10).parse().unwrap(),
                )
            })
            .collect(),
    };
    let decide = |i: usize| {
        let context = Params::from([
            ("tenant".to_string(), text("demo")),
            ("department".to_string(), text(&format!("dept-{}", i % 50))),
            ("premium".to_string(), ParamValue::Bool(i % 2 == 0)),
        ]);
        let preferences = Params::from([(
            "memory_mib".to_string(),
            ParamValue::Int(512 + (i % 8) as i64 * 512),
        )]);
        let params = gather(&Order {
            offering_name: "prod-vm",
            offering: &offering,
            blueprint: &blueprint,
            resource: &blueprint.resources[0],
            context: &context,
            preferences: &preferences,
        })
        .expect("gathered");
        let mut candidates = engine::candidates(&sites, &params, None, None);
        let outcome = rules.evaluate("compute", "prod-vm", &params, &engine::open(&candidates));
        engine::apply_rules(&mut candidates, &outcome);
        let order = engine::preference_order(&mut candidates, &prices);
        let ranked = [Ranked {
            resource: "vm",
            candidates: &candidates,
            order: &order,
        }];
        let picks = engine::pick(&ranked, None);
        if let Some(&[winner]) = picks.as_deref() {
            engine::mark_losers(&mut candidates, winner, &prices, None, "vm", &[]);
        }
        (outcome.fired.len(), candidates)
    };
    for i in 0..1_000 {
        black_box(decide(i));
    }
    let mut samples = Vec::with_capacity(DECISIONS);
    let mut fired = 0;
    for i in 0..DECISIONS {
        #[allow(clippy::disallowed_methods)] // a benchmark times itself
        let t = Instant::now();
        let (f, c) = black_box(decide(i));
        samples.push(t.elapsed());
        fired += f;
        drop(c);
    }
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{label:<36} p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs   rules fired/decision {:.1}",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
        fired as f64 / DECISIONS as f64,
    );
    (p50, p99)
}

fn main() {
    println!("placement decision, {PROVIDERS} providers, {DECISIONS} decisions per row");
    let (base50, base99) = run("baseline: no rules", 0, true);
    for (label, firing) in [
        ("100 rules, some firing", true),
        ("100 rules, almost none firing", false),
    ] {
        let (p50, p99) = run(label, 100, firing);
        println!(
            "  / baseline: p50 {:.2}x, p99 {:.2}x",
            p50.as_secs_f64() / base50.as_secs_f64(),
            p99.as_secs_f64() / base99.as_secs_f64()
        );
    }
    println!("target: p99 under 100 µs with 100 rules and 10 providers");
}
