//! The EC2 tool ecosystem, unmodified, against the real gateway: Apache Libcloud's EC2
//! driver (SigV2 by default, AWS region and size names through `[ec2]` aliases) drives a
//! real QEMU VM's whole life, its Eucalyptus driver lists it; SigV2 signatures made by
//! botocore's own signer and by hand are accepted, refused or expired as they should be,
//! and SigV2 can be switched off. Operators see the actions Skyport refused, by name.
#![forbid(unsafe_code)]

use skyport_e2e::ec2::{access_key, tool_scenario};
use skyport_e2e::{assert_guest_image_prepared, default_config, Gateway, GatewayOptions};

/// The gateway's log without its terminal colours.
fn plain_log(gw: &Gateway) -> String {
    let (mut out, log) = (String::new(), gw.log());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The shipped configuration with AWS names for local-1 and sp.micro, and tenant demo
/// acting in local-1 when a request names no region (SigV2 names none).
fn config_with_aliases() -> String {
    let demo = "[tenants.demo]\noperator = true";
    let config = default_config();
    assert!(config.contains(demo));
    config.replacen(demo, &format!("{demo}\ndefault_region = \"local-1\""), 1)
        + "\n[ec2.region_aliases]\n\"us-east-1\" = \"local-1\"\n\
           [ec2.instance_type_aliases]\n\"t3.micro\" = \"sp.micro\"\n"
}

#[tokio::test]
async fn libcloud_runs_a_vm_through_aliases_with_sigv2_and_sigv4() {
    assert_guest_image_prepared();
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config_with_aliases()),
        ..Default::default()
    });
    let key = access_key(&gw, "demo").await;
    let out = tool_scenario(&gw, "libcloud", &key);
    assert!(out.contains("libcloud ok"), "{out}");
    let log = plain_log(&gw);
    assert!(
        log.contains("identity=\"sigv2\""),
        "SigV2 requests are logged as such"
    );
    assert!(log.contains("path=/services/Eucalyptus route=\"ec2:DescribeInstances\""));
    let metrics = gw.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("skyport_ec2_sigv2_requests_total{method=\"HmacSHA256\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn sigv2_signatures_are_checked_like_sigv4_and_refused_actions_are_named() {
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config_with_aliases()),
        ..Default::default()
    });
    let key = access_key(&gw, "demo").await;
    let out = tool_scenario(&gw, "sigv2", &key);
    assert!(out.contains("sigv2 ok"), "{out}");
    // What a client asked for that Skyport does not serve is in the log and the metrics.
    let log = plain_log(&gw);
    assert!(
        log.contains("route=\"ec2:DescribeFlyingCars (unsupported)\" status=400"),
        "{log}"
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains(
            "skyport_ec2_unsupported_actions_total{action=\"ec2:DescribeFlyingCars (unsupported)\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("skyport_ec2_sigv2_requests_total{method=\"HmacSHA1\"} 1"));
}

#[tokio::test]
async fn an_operator_can_switch_sigv2_off() {
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config_with_aliases()),
        extra: "[auth.sigv2]\nenabled = false\n".into(),
    });
    let key = access_key(&gw, "demo").await;
    let out = tool_scenario(&gw, "sigv2_disabled", &key);
    assert!(out.contains("sigv2 disabled ok"), "{out}");
}
