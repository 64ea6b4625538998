//! Budgets through the API: where each of the caller's budgets stands this month
//! (`GET /v1/budgets`).

use http::StatusCode;
use serde_json::json;

use super::{check_params, json_response, Answer, NativeApi, NativeCall};

/// `GET /v1/budgets`: the caller's budgets (its department's only, for a department's
/// credential) with spend so far, committed cost, forecast and thresholds.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    check_params(&call.query(), &[])?;
    let budgets = api
        .services
        .budgets
        .status(call.ctx, call.request_id)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "budgets": budgets }),
    ))
}
