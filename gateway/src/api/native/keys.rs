//! EC2 access keys (the same store as `skyport keys`).
//!
//! For operators, any tenant's:
//! - `POST /admin/keys` `{"tenant", "department"?}` -> 201 with the secret, shown once;
//! - `GET /admin/keys[?tenant=T]` -> every key without its secret;
//! - `DELETE /admin/keys/{id}` -> revoked at once (404 unknown, 409 already revoked).
//!
//! For tenants, their own (a department's credential: its department's only):
//! - `POST /v1/keys` `{"department"?}` -> 201 with the secret, shown once;
//! - `GET /v1/keys` -> the caller's keys without their secrets;
//! - `DELETE /v1/keys/{id}` -> revoked at once (404 for a key that is not the caller's).

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use skyport_auth::access_keys::AccessKey;
use skyport_core::error::GatewayError;
use skyport_core::tenancy::TenantContext;

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

/// Whether `key` is the caller's: its tenant's, and its department's for a department's
/// credential.
fn is_callers(ctx: &TenantContext, key: &AccessKey) -> bool {
    *key.tenant == *ctx.tenant && (ctx.department.is_none() || ctx.department == key.department)
}

/// `POST /v1/keys`.
pub(super) async fn tenant_create(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        department: Option<String>,
    }
    let req: NewKey = if call.body.is_empty() {
        NewKey { department: None }
    } else {
        call.json("key request")?
    };
    let department = api
        .services
        .instances
        .department_for(call.ctx, req.department)?;
    let new = api
        .services
        .access_keys
        .create(&call.ctx.tenant, department.as_deref())
        .await?;
    tracing::info!(access_key_id = %new.key.access_key_id, tenant = %new.key.tenant, subject = %call.ctx.subject, "access key created by its tenant");
    Ok(json_response(StatusCode::CREATED, &json!(new)))
}

/// `GET /v1/keys`.
pub(super) async fn tenant_list(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    check_params(&call.query(), &[])?;
    let keys: Vec<AccessKey> = api
        .services
        .access_keys
        .list(Some(&call.ctx.tenant))
        .await?
        .into_iter()
        .filter(|k| is_callers(call.ctx, k))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
}

/// `DELETE /v1/keys/{id}`.
pub(super) async fn tenant_revoke(api: &NativeApi, call: NativeCall<'_>) -> Answer {
    let id = call.param(0);
    let keys = api
        .services
        .access_keys
        .list(Some(&call.ctx.tenant))
        .await?;
    if !keys
        .iter()
        .any(|k| k.access_key_id == id && is_callers(call.ctx, k))
    {
        return Err(GatewayError::not_found(format!("no access key {id}")));
    }
    let key = api.services.access_keys.revoke(id).await?;
    tracing::info!(access_key_id = %key.access_key_id, tenant = %key.tenant, subject = %call.ctx.subject, "access key revoked by its tenant");
    Ok(json_response(StatusCode::OK, &json!(key)))
}
