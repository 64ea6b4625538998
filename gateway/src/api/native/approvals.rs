//! Orders that wait for approval through the API: the tenant's (`GET /v1/orders`,
//! `GET /v1/orders/{id}`) and the approvers' (`GET /admin/orders`,
//! `POST /admin/orders/{id}/approve|deny`). Approvers are operators.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use skyport_core::error::GatewayError;
use skyport_domain::approvals::{ApprovalService, OrderStatus};

use super::instances::{create_instance, Approval};
use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

/// `GET /v1/orders`: the caller's orders that required approval, oldest first.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    check_params(&call.query(), &[])?;
    let orders = api.services.approvals.list(call.ctx).await?;
    Ok(json_response(StatusCode::OK, &json!({ "orders": orders })))
}

/// `GET /v1/orders/{id}`.
pub(super) async fn get(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let order = api.services.approvals.get(call.ctx, call.param(0)).await?;
    Ok(json_response(StatusCode::OK, &json!(order)))
}

/// `GET /admin/orders[?status=pending_approval|approved|failed|denied|expired]`: every
/// tenant's orders (the approvers' queue).
pub(super) async fn queue(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["status"])?;
    let status = match param(&query, "status") {
        None => None,
        Some(text) => Some(
            serde_json::from_value::<OrderStatus>(json!(text)).map_err(|_| {
                GatewayError::invalid(format!(
                    "status '{text}' is not one of pending_approval, approved, failed, denied, \
                     expired"
                ))
            })?,
        ),
    };
    let orders = api.services.approvals.queue(status).await?;
    Ok(json_response(StatusCode::OK, &json!({ "orders": orders })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/orders/{id}/approve` `{"reason"?}`: approves the order (once) and
/// creates it as its tenant would have; 200 with the order (`approved` with its instance,
/// or `failed` with the reason) and the instance.
pub(super) async fn approve(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let decision: Decision = if call.body.is_empty() {
        Decision { reason: None }
    } else {
        call.json("approval")?
    };
    let approvals = &api.services.approvals;
    let order = approvals
        .decide(call.param(0), &call.ctx.subject, true, decision.reason)
        .await?;
    let orderer = ApprovalService::orderer(&order);
    let created = create_instance(
        api,
        &orderer,
        call.request_id,
        order.request.clone(),
        Approval::Given,
        None,
    )
    .await;
    let (outcome, instance) = match created {
        Ok(instance) => (
            Ok(instance["id"].as_str().unwrap_or_default().to_string()),
            instance,
        ),
        Err(e) => (Err(e.public), serde_json::Value::Null),
    };
    let order = approvals.finish(order, outcome).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "order": order, "instance": instance }),
    ))
}

/// `POST /admin/orders/{id}/deny` `{"reason"}`: denies the order (once), with the reason
/// its tenant sees; nothing is created.
pub(super) async fn deny(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let decision: Decision = call.json("denial")?;
    let reason = decision
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| GatewayError::invalid("a denial needs a reason"))?;
    let order = api
        .services
        .approvals
        .decide(call.param(0), &call.ctx.subject, false, Some(reason))
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "order": order })))
}
