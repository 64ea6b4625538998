//! Webhook subscriptions and their deliveries through the API: a tenant's
//! (`/v1/webhooks`, its events only) and the operators' (`/admin/webhooks`, every
//! tenant's events and the platform's, and the dead letters of all).

use http::StatusCode;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_domain::events::Viewer;
use skyport_domain::events::{Delivery, DeliveryQuery, DeliveryStatus, NewSubscription};

use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

/// `POST /v1/webhooks` `{"url", "events", "description"?}`: subscribes an endpoint to
/// the caller's tenant's events (its department's, for a department's credential); 201
/// with the subscription and its signing secret, shown this once.
pub(super) async fn subscribe(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    subscribe_as(api, call, false).await
}

/// `POST /admin/webhooks`: an operators' subscription (every tenant's events and the
/// platform's).
pub(super) async fn admin_subscribe(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    subscribe_as(api, call, true).await
}

async fn subscribe_as(api: &NativeApi, call: NativeCall<'_>, operator: bool) -> Answer {
    let new: NewSubscription = call.json("webhook subscription")?;
    let subscription = api
        .services
        .events
        .subscribe(call.ctx, operator, new)
        .await?;
    Ok(json_response(StatusCode::CREATED, &json!(subscription)))
}

fn viewer<'a>(call: &'a NativeCall<'_>, operator: bool) -> Viewer<'a> {
    if operator {
        Viewer::Operator
    } else {
        Viewer::Tenant(call.ctx)
    }
}

/// `GET /v1/webhooks`: the caller's subscriptions, without secrets.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    list_as(api, call, false).await
}

/// `GET /admin/webhooks`: every subscription, without secrets.
pub(super) async fn admin_list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    list_as(api, call, true).await
}

async fn list_as(api: &NativeApi, call: NativeCall<'_>, operator: bool) -> Answer {
    check_params(&call.query(), &[])?;
    let webhooks = api.services.events.list(viewer(&call, operator)).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "webhooks": webhooks }),
    ))
}

/// `GET /v1/webhooks/{id}`.
pub(super) async fn get(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let subscription = api
        .services
        .events
        .get(viewer(&call, false), call.param(0))
        .await?;
    Ok(json_response(StatusCode::OK, &json!(subscription)))
}

/// `DELETE /v1/webhooks/{id}`: unsubscribes; what it was not yet delivered is dropped.
pub(super) async fn delete(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    delete_as(api, call, false).await
}

/// `DELETE /admin/webhooks/{id}`: any subscription.
pub(super) async fn admin_delete(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    delete_as(api, call, true).await
}

async fn delete_as(api: &NativeApi, call: NativeCall<'_>, operator: bool) -> Answer {
    let events = &api.services.events;
    let subscription = events.get(viewer(&call, operator), call.param(0)).await?;
    events
        .unsubscribe(viewer(&call, operator), call.param(0))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "deleted": subscription.id }),
    ))
}

/// `GET /v1/webhooks/{id}/deliveries[?status=pending|delivered|dead&limit=N]`: the
/// subscription's deliveries, newest first.
pub(super) async fn deliveries(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["status", "limit"])?;
    let mut wanted = delivery_query(&query)?;
    wanted.subscription_id = Some(call.param(0).to_string());
    let found = api
        .services
        .events
        .deliveries(viewer(&call, false), wanted)
        .await?;
    Ok(deliveries_response(&found, false))
}

/// `GET /admin/webhooks/deliveries[?status=dead&subscription=ID&limit=N]`: every
/// subscription's deliveries (the dead letters with `status=dead`), newest first.
pub(super) async fn admin_deliveries(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["status", "subscription", "limit"])?;
    let mut wanted = delivery_query(&query)?;
    wanted.subscription_id = param(&query, "subscription").map(str::to_owned);
    let found = api
        .services
        .events
        .deliveries(Viewer::Operator, wanted)
        .await?;
    Ok(deliveries_response(&found, true))
}

/// `POST /admin/webhooks/deliveries/{id}/retry`: puts a dead-lettered delivery back in
/// the outbox (409 for one that is not dead).
pub(super) async fn admin_retry(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let delivery = api.services.events.retry(call.param(0)).await?;
    Ok(json_response(
        StatusCode::OK,
        &delivery_json(&delivery, true),
    ))
}

fn delivery_query(query: &[(String, String)]) -> Result<DeliveryQuery, GatewayError> {
    let status = match param(query, "status") {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            GatewayError::invalid(format!(
                "status '{text}' is not one of pending, delivered, dead"
            ))
        })?),
    };
    let limit = match param(query, "limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| GatewayError::invalid(format!("limit '{text}' is not 1-1000")))?,
    };
    Ok(DeliveryQuery {
        subscription_id: None,
        status,
        limit,
    })
}

fn deliveries_response(
    found: &[Delivery],
    operator: bool,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let deliveries: Vec<Value> = found.iter().map(|d| delivery_json(d, operator)).collect();
    json_response(StatusCode::OK, &json!({ "deliveries": deliveries }))
}

/// A delivery as the API shows it: with its event, and (to operators) its tenant.
fn delivery_json(delivery: &Delivery, operator: bool) -> Value {
    let mut shown = json!({
        "id": delivery.id,
        "subscription_id": delivery.subscription_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "created_at": delivery.created_at,
        "last_error": delivery.last_error,
        "finished_at": delivery.finished_at,
        "event": serde_json::from_str::<Value>(&delivery.payload).unwrap_or(Value::Null),
    });
    if delivery.status == DeliveryStatus::Pending {
        shown["next_attempt_at"] = json!(delivery.next_attempt_at);
    }
    if operator {
        shown["tenant"] = json!(delivery.tenant);
    }
    shown
}
