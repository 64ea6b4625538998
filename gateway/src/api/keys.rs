//! `/admin/keys`: EC2 access keys for operators (the same store as `skyport keys`).
//!
//! - `POST /admin/keys` `{"tenant", "department"?}` -> 201 with the secret, shown once;
//! - `GET /admin/keys[?tenant=T]` -> every key without its secret;
//! - `DELETE /admin/keys/{id}` -> revoked at once (404 unknown, 409 already revoked).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::json_response;
use crate::error::GatewayError;
use crate::state::AppState;

/// `POST /admin/keys`.
pub async fn create(state: &AppState, body: Bytes) -> Result<Response<Full<Bytes>>, GatewayError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        tenant: String,
        department: Option<String>,
    }
    let req: NewKey = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("invalid key request: {e}")))?;
    state
        .tenants
        .check_member(&req.tenant, req.department.as_deref())?;
    let new = state
        .access_keys
        .create(&req.tenant, req.department.as_deref())
        .await?;
    tracing::info!(access_key_id = %new.key.access_key_id, tenant = %new.key.tenant, "access key created");
    Ok(json_response(StatusCode::CREATED, &json!(new)))
}

/// `GET /admin/keys`.
pub async fn list(
    state: &AppState,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let mut tenant = None;
    for (k, v) in query {
        match k.as_str() {
            "tenant" => tenant = Some(v.as_str()),
            other => {
                return Err(GatewayError::invalid(format!(
                    "unknown query parameter '{other}'; use tenant"
                )))
            }
        }
    }
    let keys = state.access_keys.list(tenant).await?;
    Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
}

/// `DELETE /admin/keys/{id}`.
pub async fn revoke(state: &AppState, id: &str) -> Result<Response<Full<Bytes>>, GatewayError> {
    let key = state.access_keys.revoke(id).await?;
    tracing::info!(access_key_id = %key.access_key_id, tenant = %key.tenant, "access key revoked");
    Ok(json_response(StatusCode::OK, &json!(key)))
}
