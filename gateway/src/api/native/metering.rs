//! Metering through the API: the tenant's bill and usage (`GET /v1/bill`, `GET /v1/usage`)
//! and the operators' routes (every tenant's bill, finalized periods, record types).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_domain::operations::metering::BillRequest;

use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

/// `GET /v1/bill?period=YYYY-MM[&department=D][&format=json|focus|csr]
/// [&group_by=provider|region|department|offering|tag:KEY]`.
pub(super) async fn bill(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["period", "department", "format", "group_by"])?;
    let request = BillRequest {
        period: param(&query, "period"),
        department: param(&query, "department"),
        format: param(&query, "format").unwrap_or("json"),
        group_by: param(&query, "group_by"),
    };
    let bill = api
        .services
        .metering
        .bill(call.ctx, call.request_id, request)
        .await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, bill.content_type)
        .body(Full::new(Bytes::from(bill.body)))
        .map_err(GatewayError::internal)
}

/// `GET /v1/usage?from=T&to=T[&department=D]`: raw usage records.
pub(super) async fn usage(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["from", "to", "department"])?;
    let (Some(from), Some(to)) = (param(&query, "from"), param(&query, "to")) else {
        return Err(GatewayError::invalid(
            "from and to (RFC 3339 times) are required",
        ));
    };
    let records = api
        .services
        .metering
        .usage(
            call.ctx,
            call.request_id,
            from,
            to,
            param(&query, "department"),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "usage": records })))
}

/// `GET /admin/bills?period=YYYY-MM`: every tenant's bill (JSON).
pub(super) async fn admin_bills(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["period"])?;
    let period = param(&query, "period")
        .ok_or_else(|| GatewayError::invalid("period=YYYY-MM is required"))?;
    let bills = api
        .services
        .metering
        .all_bills(call.ctx, call.request_id, period)
        .await?;
    Ok(json_response(StatusCode::OK, &bills))
}

/// `POST /admin/periods/{period}/finalize`: freezes that period's bills (409 before the
/// period has ended, or when it already is).
pub(super) async fn finalize(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let done = api
        .services
        .metering
        .finalize(call.ctx, call.request_id, call.param(0))
        .await?;
    Ok(json_response(StatusCode::OK, &done))
}

/// `GET /admin/periods`: finalized periods.
pub(super) async fn periods(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let periods = api
        .services
        .metering
        .periods(call.ctx, call.request_id)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "finalized": periods }),
    ))
}

/// `GET /admin/record-types`: the registered record types.
pub(super) async fn record_types(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let types = api
        .services
        .metering
        .record_types(call.ctx, call.request_id)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "record_types": types }),
    ))
}

/// `POST /admin/record-types` `{id, primary_key, state_key, group_key}`: 201 when newly
/// registered, 200 when the same definition already was, 409 for another definition.
pub(super) async fn register_record_type(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let definition: Value = call.json("record type")?;
    let done = api
        .services
        .metering
        .register_record_type(call.ctx, call.request_id, definition)
        .await?;
    let status = if done["registered"] == true {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &done))
}
