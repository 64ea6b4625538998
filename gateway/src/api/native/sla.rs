//! `GET /admin/sla[?period=YYYY-MM]`: the providers' service level for a month.

use http::StatusCode;
use serde_json::json;

use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

/// Availability, error rate and p50/p99 latency per provider and region, against the
/// availability target (the current month by default).
pub(super) async fn report(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["period"])?;
    let report = api.services.sla.report(param(&query, "period")).await?;
    Ok(json_response(StatusCode::OK, &json!(report)))
}
