//! The FOCUS export checked by the FinOps Foundation's validator (`focus-validator` 2.2.1
//! and its bundled FOCUS 1.2 rules, run offline from `.venv-focus`, made by
//! `tests/install-deps.sh test`), on a bill with several providers, departments and tags:
//! a finalized period, and the open one with its corrections.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use skyport_e2e::{previous_and_current_period, Gateway};

/// What Skyport's data supports, so that the validator also checks those columns' rules
/// (without criteria it skips them).
const CRITERIA: &str = "ACCOUNT_NAMING_SUPPORTED,REGION_SUPPORTED,TAGGING_SUPPORTED,\
SUB_ACCOUNT_SUPPORTED,RESOURCE_TYPE_ASSIGNMENT_SUPPORTED,\
BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED";

/// Rules of which a dataset passes one or the other, never both: the validator reports
/// the branch not taken as failed while the rule joining them (`OR`) passes. InvoiceId is
/// null on every row of an open period and set on every row of a finalized one.
const ALTERNATIVES: &[(&str, [&str; 2])] = &[(
    "InvoiceId-C-003-C",
    ["InvoiceId-C-004-C", "InvoiceId-C-005-C"],
)];

/// The validator and the working directory it must run in; fails loudly when missing.
fn validator() -> (PathBuf, PathBuf) {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-focus");
    let bin = venv.join("bin/focus-validator");
    let workdir = venv.join("workdir");
    assert!(
        bin.exists()
            && workdir
                .join("focus_validator/rules/currency_codes.csv")
                .exists(),
        "the FOCUS validator is missing: run `tests/install-deps.sh test` (it installs \
         focus-validator into .venv-focus)"
    );
    (bin, workdir)
}

/// Runs the validator on `csv` and asserts that it passes; returns the rules that passed.
fn assert_valid(csv: &str, name: &str) -> Vec<String> {
    let (bin, workdir) = validator();
    let file =
        std::env::temp_dir().join(format!("skyport-focus-{}-{name}.csv", std::process::id()));
    std::fs::write(&file, csv).unwrap();
    let output = Command::new(bin)
        .current_dir(workdir)
        .args([
            "--validate-version",
            "1.2",
            "--block-download",
            "--show-violations",
        ])
        .args(["--applicability-criteria", CRITERIA])
        .arg("--data-file")
        .arg(&file)
        .output()
        .expect("focus-validator runs");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    std::fs::remove_file(&file).unwrap();
    assert!(output.status.success(), "{name}: {report}");
    let status_of = |line: &str, status: &str| {
        line.split_once(&format!(": {status}"))
            .map(|(rule, _)| rule.rsplit(' ').next().unwrap_or_default().to_string())
    };
    let passed: Vec<String> = report
        .lines()
        .filter_map(|l| status_of(l, "PASS"))
        .collect();
    let failed: Vec<String> = report
        .lines()
        .filter_map(|l| status_of(l, "FAIL"))
        .collect();
    assert!(
        report.contains("Total:") && passed.len() > 150,
        "{name}: the validator checked too little:\n{report}"
    );
    for rule in &failed {
        let excused = ALTERNATIVES.iter().any(|(joined, branches)| {
            branches.contains(&rule.as_str()) && passed.iter().any(|p| p == joined)
        });
        assert!(excused, "{name}: rule {rule} failed:\n{report}");
    }
    passed
}

fn lifecycle(id: &str, instance: (&str, &str, &str), event: &str, time: &str) -> Value {
    let (instance_id, provider, department) = instance;
    let tags = match instance_id {
        "i-00000000000000a01" => json!({"project": "apollo", "env": "prod"}),
        "i-00000000000000b02" => json!({"project": "zeus"}),
        "i-00000000000000d04" => json!({"project": "apollo", "cost center": "42"}),
        _ => json!({}),
    };
    json!({"id": id, "type": "instance.lifecycle", "time": time, "tenant": "acme",
           "department": department,
           "attributes": {"event": event, "instance_id": instance_id, "provider": provider,
                          "region": format!("{provider}-1"), "instance_type": "sp.small",
                          "vcpus": 1, "memory_mib": 256, "tags": tags}})
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_focus_export_passes_the_finops_validator_and_tags_add_up() {
    validator();
    let gw = Gateway::start();
    let admin = gw.token("ops", None, &["admin"]);
    let acme = gw.token("acme", None, &[]);
    let (previous, current) = previous_and_current_period();
    let ingest = |events: Vec<Value>| {
        gw.post_json(
            "/admin/plugins/metering/ops/meter.batch",
            &admin,
            Some(json!({"sequence": 1, "events": events})),
        )
    };
    let a = ("i-00000000000000a01", "local-vmm", "finance");
    let b = ("i-00000000000000b02", "aws-us-east-1", "research");
    let c = ("i-00000000000000c03", "eucalyptus", "finance");
    let d = ("i-00000000000000d04", "local-vmm", "research");
    let api = |id: &str, department: &str, time: &str| {
        json!({"id": id, "type": "api.request", "time": time, "tenant": "acme",
               "department": department,
               "attributes": {"route": "GET /v1/instances", "status": 200}})
    };
    let stored = ingest(vec![
        lifecycle("p-1", a, "run", &format!("{previous}-03T10:00:00.250Z")),
        lifecycle("p-2", a, "stop", &format!("{previous}-03T12:30:00Z")),
        lifecycle("p-3", b, "run", &format!("{previous}-04T08:00:00Z")),
        lifecycle("p-4", b, "terminate", &format!("{previous}-04T11:00:00Z")),
        api("p-5", "finance", &format!("{previous}-05T09:00:00Z")),
        api("p-6", "research", &format!("{previous}-05T09:00:01Z")),
    ])
    .await;
    assert_eq!(stored["result"]["accepted"], 6, "{stored}");
    gw.post_json(&format!("/admin/periods/{previous}/finalize"), &admin, None)
        .await;
    // Late for the finalized period (a correction in the open one), and this period's own.
    let stored = ingest(vec![
        lifecycle("l-1", c, "run", &format!("{previous}-20T20:00:00Z")),
        lifecycle("l-2", c, "terminate", &format!("{previous}-20T22:00:00Z")),
        lifecycle("o-1", d, "run", &format!("{current}-01T00:00:00Z")),
        api("o-2", "finance", &format!("{current}-01T00:00:01Z")),
    ])
    .await;
    assert_eq!(stored["result"]["accepted"], 4, "{stored}");

    let export = |period: String| {
        let gw = &gw;
        let acme = &acme;
        async move {
            let response = gw
                .get(&format!("/v1/bill?period={period}&format=focus"), acme)
                .await;
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let finalized = export(previous.clone()).await;
    let open = export(current.clone()).await;
    // Several providers, departments and tags, and a correction in the open period.
    for (text, needles) in [
        (
            &finalized,
            &[
                ",Skyport,aws-us-east-1,",
                "finance",
                "research",
                r#""{""env"":""prod"",""project"":""apollo""}""#,
                &format!(",acme-{previous},"),
            ][..],
        ),
        (
            &open,
            &[
                "Correction",
                ",Skyport,eucalyptus,",
                r#""{""cost center"":""42"",""project"":""apollo""}""#,
            ][..],
        ),
    ] {
        for needle in needles {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
    }
    assert!(!open.contains(&format!("acme-{current}")), "{open}");
    let passed = assert_valid(&finalized, "finalized");
    assert!(
        passed.iter().any(|r| r == "InvoiceId-C-005-C"),
        "{passed:?}"
    );
    let passed = assert_valid(&open, "open");
    assert!(
        passed.iter().any(|r| r == "InvoiceId-C-004-C"),
        "{passed:?}"
    );

    // Cost by tag, and by every other grouping, adds up to the total.
    for period in [&previous, &current] {
        for group_by in ["tag:project", "provider", "region", "department"] {
            let bill = gw
                .get_json(
                    &format!("/v1/bill?period={period}&group_by={group_by}"),
                    &acme,
                )
                .await;
            let groups = bill["grouped"]["groups"].as_object().unwrap();
            let sum: Decimal = groups.values().map(dec).sum();
            assert_eq!(sum, dec(&bill["total"]), "{group_by}: {bill:#}");
            if group_by == "tag:project" {
                assert!(groups.contains_key("apollo"), "{bill:#}");
                assert!(groups.contains_key("(untagged)"), "{bill:#}");
            }
        }
    }
}
