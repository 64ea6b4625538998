//! `/admin/keys`: EC2 access keys for operators (the same store as `skyport keys`).
//!
//! - `POST /admin/keys` `{"tenant", "department"?}` -> 201 with the secret, shown once;
//! - `GET /admin/keys[?tenant=T]` -> every key without its secret;
//! - `DELETE /admin/keys/{id}` -> revoked at once (404 unknown, 409 already revoked).

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{check_params, json_response, param, Answer, NativeApi, NativeCall};

/// `POST /admin/keys`.
pub(super) async fn create(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        tenant: String,
        department: Option<String>,
    }
    let req: NewKey = call.json("key request")?;
    api.services
        .tenants
        .check_member(&req.tenant, req.department.as_deref())?;
    let new = api
        .services
        .access_keys
        .create(&req.tenant, req.department.as_deref())
        .await?;
    tracing::info!(access_key_id = %new.key.access_key_id, tenant = %new.key.tenant, "access key created");
    Ok(json_response(StatusCode::CREATED, &json!(new)))
}

/// `GET /admin/keys`.
pub(super) async fn list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let query = call.query();
    check_params(&query, &["tenant"])?;
    let keys = api
        .services
        .access_keys
        .list(param(&query, "tenant"))
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
}

/// `DELETE /admin/keys/{id}`.
pub(super) async fn revoke(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let key = api.services.access_keys.revoke(call.param(0)).await?;
    tracing::info!(access_key_id = %key.access_key_id, tenant = %key.tenant, "access key revoked");
    Ok(json_response(StatusCode::OK, &json!(key)))
}
