//! Why an order cannot be placed, said so a caller can act on it: unknown or disallowed
//! pins, a parameter nothing sets, a value Skyport cannot read, no provider able to serve,
//! separated resources that cannot be kept apart.

use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::TenantContext;

use super::engine::{self, Site};
use super::params::{GatherError, ParamSet};
use super::{Candidate, Pending};
use crate::catalog::{BlueprintConfig, OfferingConfig, PlanConfig, Separation, TEXT_PARAMS};

/// A `provider` or `region` parameter must name one that is loaded (400 otherwise), and a
/// region must be one the caller's plan allows (403 otherwise).
pub(super) fn check_pins(
    sites: &[Site],
    params: &ParamSet,
    plan: Option<(&str, &PlanConfig)>,
) -> Result<(), GatewayError> {
    let known = |names: Vec<&str>| {
        let mut distinct: Vec<&str> = Vec::new();
        for name in names {
            if !distinct.contains(&name) {
                distinct.push(name);
            }
        }
        distinct.join(", ")
    };
    if let Some(provider) = params.text("provider") {
        if !sites.iter().any(|s| s.provider == provider) {
            return Err(GatewayError::invalid(format!(
                "no provider '{provider}' is loaded; choose one of {}",
                known(sites.iter().map(|s| s.provider.as_str()).collect())
            )));
        }
    }
    if let Some(region) = params.text("region") {
        if !sites.iter().any(|s| s.region == region) {
            return Err(GatewayError::invalid(format!(
                "unknown region '{region}'; choose one of {}",
                known(sites.iter().map(|s| s.region.as_str()).collect())
            )));
        }
        if let Some((name, plan)) = plan.filter(|(_, p)| !p.allows_region(region)) {
            return Err(GatewayError::forbidden(format!(
                "plan '{name}' does not include region '{region}'; it allows {}",
                plan.regions.join(", ")
            )));
        }
    }
    Ok(())
}

/// The problem for a parameter set that could not be gathered; a missing parameter is also
/// logged and counted, for the operator.
pub(super) fn gather_error(
    metrics: &Metrics,
    ctx: &TenantContext,
    name: &str,
    offering: &OfferingConfig,
    e: GatherError,
) -> GatewayError {
    match e {
        GatherError::NotUserSettable { parameter } => GatewayError::invalid(format!(
            "offering '{name}' does not let you set '{parameter}'; you may set: {}",
            offering.user_params.join(", ")
        )),
        GatherError::TooLong { parameter } => GatewayError::invalid(format!(
            "parameter '{parameter}' is longer than {} characters",
            super::params::MAX_PARAM_CHARS
        )),
        GatherError::Missing { parameter } => {
            tracing::warn!(offering = %name, tenant = %ctx.tenant, parameter = %parameter,
                "order stopped: a required parameter has no value and no default");
            metrics
                .placement_missing_parameter
                .get_or_create(&vec![("parameter", parameter.clone())])
                .inc();
            GatewayError::invalid(format!(
                "parameter '{parameter}' has no value: neither the blueprint, the offering, \
                 your context, your request nor a default sets it"
            ))
        }
    }
}

/// The values Skyport reads itself must be text, and the instance type one it knows.
pub(super) fn check_values(params: &ParamSet) -> Result<(), GatewayError> {
    for text_param in TEXT_PARAMS {
        if params
            .get(text_param)
            .is_some_and(|v| v.as_text().is_none())
        {
            return Err(GatewayError::invalid(format!(
                "parameter '{text_param}' must be text"
            )));
        }
    }
    crate::catalog::parse_instance_type(params.text("instance_type").unwrap_or_default())?;
    Ok(())
}

/// The problem when no candidate can serve a resource: every candidate and why, and the
/// regions the caller's plan allows when it limits them. 503 when one could serve but its
/// provider is unhealthy now, else 400.
pub(super) fn no_candidate(
    offering: &str,
    resource: &str,
    candidates: &[Candidate],
    plan: Option<(&str, &PlanConfig)>,
) -> GatewayError {
    let reasons: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{}/{}: {}",
                c.provider,
                c.region,
                c.lost.as_deref().unwrap_or("")
            )
        })
        .collect();
    let plan_regions = plan
        .filter(|(_, p)| !p.regions.is_empty())
        .map(|(name, p)| {
            format!(
                "; your plan '{name}' allows only region {}",
                p.regions.join(", ")
            )
        })
        .unwrap_or_default();
    let message = format!(
        "no provider can serve offering '{offering}' (resource '{resource}'){}{plan_regions}",
        if reasons.is_empty() {
            " (no provider is loaded)".to_string()
        } else {
            format!(": {}", reasons.join("; "))
        }
    );
    // A provider that could serve but is unhealthy now: worth retrying later.
    let unhealthy = candidates.iter().any(|c| {
        c.lost
            .as_deref()
            .is_some_and(|l| l.starts_with(engine::UNHEALTHY))
    });
    if unhealthy {
        GatewayError::new(ErrorKind::Unavailable, message)
    } else {
        GatewayError::invalid(message)
    }
}

/// The problem when every resource has candidates but no combination keeps the separated
/// ones apart.
pub(super) fn inseparable(
    offering: &str,
    blueprint: &BlueprintConfig,
    pending: &[Pending],
) -> GatewayError {
    let separate = blueprint.separate.as_ref();
    let by = match separate.map(|s| s.by) {
        Some(Separation::Provider) => "providers",
        _ => "regions",
    };
    let each: Vec<String> = pending
        .iter()
        .map(|p| {
            let at: Vec<String> = p
                .order
                .iter()
                .map(|&i| format!("{}/{}", p.candidates[i].provider, p.candidates[i].region))
                .collect();
            format!("'{}' can use {}", p.resource, at.join(", "))
        })
        .collect();
    GatewayError::new(
        ErrorKind::Conflict,
        format!(
            "offering '{offering}' needs {} in different {by}, and no placement does that: {}",
            separate
                .map(|s| s.resources.join(" and "))
                .unwrap_or_default(),
            each.join("; ")
        ),
    )
}
