//! `/admin/blueprints`, `/admin/offerings`, `/admin/plans`: the catalog, managed at run time.
//! Every change is checked against the whole catalog it would make (references, locked
//! parameters, the values Skyport reads), stored, and in force for the next order.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::json_response;
use crate::catalog::store::{Change, Kind};
use crate::error::{ErrorKind, GatewayError};
use crate::state::AppState;

/// One admin catalog request: list, get, put or delete.
pub async fn handle(
    state: &AppState,
    method: &Method,
    kind: Kind,
    name: Option<&str>,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, GatewayError> {
    let plural = kind.plural();
    match (method, name) {
        (&Method::GET | &Method::HEAD, None) => {
            let catalog = state.catalog.load();
            Ok(json_response(
                StatusCode::OK,
                &json!({ plural: catalog.objects(kind) }),
            ))
        }
        (&Method::GET | &Method::HEAD, Some(name)) => {
            let object = state.catalog.load().object(kind, name).ok_or_else(|| {
                GatewayError::not_found(format!("no {} '{name}'", singular(kind)))
            })?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (&Method::PUT, Some(name)) => {
            let body: Value = serde_json::from_slice(&body).map_err(|e| {
                GatewayError::invalid(format!("the body must be a JSON object: {e}"))
            })?;
            if !body.is_object() {
                return Err(GatewayError::invalid("the body must be a JSON object"));
            }
            let existed = state.catalog.load().object(kind, name).is_some();
            let change = Change {
                kind,
                name: name.to_string(),
                body: Some(body),
            };
            apply(state, &change).await?;
            let object = state.catalog.load().object(kind, name).unwrap_or_default();
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(status, &object))
        }
        (&Method::DELETE, Some(name)) => {
            if state.catalog.load().object(kind, name).is_none() {
                return Err(GatewayError::not_found(format!(
                    "no {} '{name}'",
                    singular(kind)
                )));
            }
            let change = Change {
                kind,
                name: name.to_string(),
                body: None,
            };
            apply(state, &change).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"deleted": format!("{plural}.{name}")}),
            ))
        }
        _ => Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!(
                "{method} is not allowed on /admin/{plural}{}",
                if name.is_some() { "/{name}" } else { "" }
            ),
        )),
    }
}

fn singular(kind: Kind) -> &'static str {
    match kind {
        Kind::Blueprint => "blueprint",
        Kind::Offering => "offering",
        Kind::Plan => "plan",
    }
}

/// Checks the catalog `change` would make, stores the change and puts that catalog in
/// force; changes are applied one at a time. A body that does not parse, or a catalog
/// that would not validate, is 400 naming every problem's key path; a deletion that
/// others still refer to is 409 naming them.
async fn apply(state: &AppState, change: &Change) -> Result<(), GatewayError> {
    let _one_at_a_time = state.catalog_writes.lock().await;
    let next = state
        .catalog
        .load()
        .with_change(change)
        .map_err(|e| GatewayError::invalid(format!("{}: {}", e.path, e.message)))?;
    let errors = crate::catalog::validate(&next, &state.config.tenants);
    if !errors.is_empty() {
        let listed: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        let kind = if change.body.is_none() {
            ErrorKind::Conflict
        } else {
            ErrorKind::InvalidInput
        };
        let what = if change.body.is_none() {
            "it is still referred to"
        } else {
            "the catalog would not be valid"
        };
        return Err(GatewayError::new(
            kind,
            format!("{what}: {}", listed.join("; ")),
        ));
    }
    state.catalog_store.save(change).await?;
    state.catalog.store(std::sync::Arc::new(next));
    state.cache.invalidate_all();
    tracing::info!(
        object = %format!("{}.{}", change.kind.plural(), change.name),
        change = if change.body.is_some() { "put" } else { "delete" },
        "catalog changed"
    );
    Ok(())
}
