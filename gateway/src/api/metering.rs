//! Metering through the API: the tenant's bill and usage (`GET /v1/bill`, `GET /v1/usage`;
//! a department-scoped token sees its department only) and the operators' routes (every
//! tenant's bill, finalized periods, record types), each served by whichever metering
//! plugin implements the op.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use skyport_plugin_host::Plugins as _;

use super::json_response;
use crate::auth::TenantContext;
use crate::error::{ErrorKind, GatewayError};
use crate::operations::{context, PROVIDER_TIMEOUT};
use crate::state::AppState;

/// The first loaded plugin serving `op@1`.
fn metering_plugin<'a>(state: &'a AppState, op: &str) -> Result<&'a str, GatewayError> {
    let wanted = format!("{op}@1");
    state
        .plugins
        .plugins()
        .iter()
        .find(|p| p.ops.contains(&wanted))
        .map(|p| p.name.as_str())
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!("no metering plugin serving {wanted} is loaded"),
            )
        })
}

/// The department a request may see: the token's, or for a tenant-wide token the one it
/// asks for (if any).
fn department_scope(
    ctx: &TenantContext,
    asked: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    match (&ctx.department, asked) {
        (Some(own), Some(asked)) if own != asked => Err(GatewayError::forbidden(format!(
            "a token of department '{own}' cannot see department '{asked}'"
        ))),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, asked) => Ok(asked.map(str::to_owned)),
    }
}

/// Refuses query parameters other than `allowed`.
fn check_params(query: &[(String, String)], allowed: &[&str]) -> Result<(), GatewayError> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(GatewayError::invalid(format!(
            "unknown query parameter '{k}'; use {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `GET /v1/bill?period=YYYY-MM[&department=D][&format=json|focus|csr]`.
pub async fn bill(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, GatewayError> {
    check_params(query, &["period", "department", "format"])?;
    let format = param(query, "format").unwrap_or("json");
    let department = department_scope(ctx, param(query, "department"))?;
    let mut params = json!({"tenant": &*ctx.tenant, "department": department, "format": format});
    if let Some(period) = param(query, "period") {
        params["period"] = Value::from(period);
    }
    let rendered = metering_call(state, ctx, request_id, "bill.render", params).await?;
    let content_type = rendered["content_type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let body = rendered["body"].as_str().unwrap_or_default().to_string();
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(GatewayError::internal)
}

/// `GET /v1/usage?from=T&to=T[&department=D]`: raw usage records.
pub async fn usage(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, GatewayError> {
    check_params(query, &["from", "to", "department"])?;
    let (Some(from), Some(to)) = (param(query, "from"), param(query, "to")) else {
        return Err(GatewayError::invalid(
            "from and to (RFC 3339 times) are required",
        ));
    };
    let department = department_scope(ctx, param(query, "department"))?;
    let records = metering_call(
        state,
        ctx,
        request_id,
        "usage.list",
        json!({"tenant": &*ctx.tenant, "department": department, "from": from, "to": to}),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &json!({ "usage": records })))
}

/// Calls `op@1` with `params` on the metering plugin that serves it; the JSON answer.
async fn metering_call(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    op: &str,
    params: Value,
) -> Result<Value, GatewayError> {
    let plugin = metering_plugin(state, op)?;
    state
        .plugins
        .call(
            plugin,
            op,
            1,
            params,
            context(ctx, request_id),
            PROVIDER_TIMEOUT,
        )
        .await
}

/// `GET /admin/bills?period=YYYY-MM`: every tenant's bill (JSON).
pub async fn admin_bills(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, GatewayError> {
    check_params(query, &["period"])?;
    let period = param(query, "period")
        .ok_or_else(|| GatewayError::invalid("period=YYYY-MM is required"))?;
    let bills = metering_call(
        state,
        ctx,
        request_id,
        "bill.all",
        json!({"period": period}),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &bills))
}

/// `POST /admin/periods/{period}/finalize`: freezes that period's bills (409 before the
/// period has ended, or when it already is).
pub async fn finalize(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    period: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let done = metering_call(
        state,
        ctx,
        request_id,
        "period.finalize",
        json!({"period": period}),
    )
    .await?;
    tracing::info!(period, "billing period finalized");
    Ok(json_response(StatusCode::OK, &done))
}

/// `GET /admin/periods`: finalized periods.
pub async fn periods(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let periods = metering_call(state, ctx, request_id, "periods.list", json!({})).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "finalized": periods }),
    ))
}

/// `GET /admin/record-types`: the registered record types.
pub async fn record_types(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let types = metering_call(state, ctx, request_id, "record_types.list", json!({})).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "record_types": types }),
    ))
}

/// `POST /admin/record-types` `{id, primary_key, state_key, group_key}`: 201 when newly
/// registered, 200 when the same definition already was, 409 for another definition.
pub async fn register_record_type(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let definition: Value = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid record type: {e}")))?;
    let done = metering_call(state, ctx, request_id, "record_types.register", definition).await?;
    let status = if done["registered"] == true {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &done))
}
