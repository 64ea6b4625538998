//! Metering through the API: bills, usage, finalized periods and record types, each
//! served by whichever metering plugin implements the op. A department-scoped credential
//! sees its own department only.

use std::sync::Arc;

use serde_json::{json, Value};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

use super::instances::PROVIDER_TIMEOUT;
use crate::call_context;

/// A rendered bill: its media type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBill {
    /// `application/json`, `text/csv`, ...
    pub content_type: String,
    /// The bill.
    pub body: String,
}

/// What a tenant asks of its bill (`GET /v1/bill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillRequest<'a> {
    /// `YYYY-MM`; the current period when absent.
    pub period: Option<&'a str>,
    /// One department's view, when given.
    pub department: Option<&'a str>,
    /// `json`, `focus` or `csr`.
    pub format: &'a str,
    /// `provider`, `region`, `department` or `tag:KEY`: the cost by group beside the
    /// bill (JSON only).
    pub group_by: Option<&'a str>,
}

/// Calls `op@1` with `params` on the first loaded metering plugin that serves it, for
/// `ctx`'s request `request_id`, within `timeout`; 503 when none is loaded.
pub async fn call_metering(
    plugins: &dyn Plugins,
    ctx: &TenantContext,
    request_id: &str,
    op: &str,
    params: Value,
    timeout: std::time::Duration,
) -> Result<Value, GatewayError> {
    let wanted = format!("{op}@1");
    let plugin = plugins
        .loaded()
        .into_iter()
        .find(|p| p.serves(&wanted))
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!("no metering plugin serving {wanted} is loaded"),
            )
        })?;
    plugins
        .call(
            &plugin.name,
            op,
            1,
            params,
            call_context(ctx, request_id),
            timeout,
        )
        .await
}

/// The metering operations.
pub struct MeteringService {
    plugins: Arc<dyn Plugins>,
}

impl MeteringService {
    /// Metering served by the metering plugins among `plugins`.
    pub fn new(plugins: Arc<dyn Plugins>) -> Self {
        Self { plugins }
    }

    /// Calls `op@1` with `params` on the first loaded plugin that serves it.
    async fn call(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        op: &str,
        params: Value,
    ) -> Result<Value, GatewayError> {
        call_metering(
            &*self.plugins,
            ctx,
            request_id,
            op,
            params,
            PROVIDER_TIMEOUT,
        )
        .await
    }

    /// The tenant's bill as `request` asks for it.
    pub async fn bill(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        request: BillRequest<'_>,
    ) -> Result<RenderedBill, GatewayError> {
        let department = department_scope(ctx, request.department)?;
        let mut params = json!({"tenant": &*ctx.tenant, "department": department});
        if let Some(period) = request.period {
            params["period"] = Value::from(period);
        }
        if let Some(group_by) = request.group_by {
            if request.format != "json" {
                return Err(GatewayError::invalid(format!(
                    "group_by applies to format=json, not format={}",
                    request.format
                )));
            }
            params["group_by"] = Value::from(group_by);
            let bill = self.call(ctx, request_id, "bill.get", params).await?;
            return Ok(RenderedBill {
                content_type: "application/json".into(),
                body: bill.to_string(),
            });
        }
        params["format"] = Value::from(request.format);
        let rendered = self.call(ctx, request_id, "bill.render", params).await?;
        Ok(RenderedBill {
            content_type: rendered["content_type"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_string(),
            body: rendered["body"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// The tenant's raw usage records between `from` and `to` (RFC 3339).
    pub async fn usage(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        from: &str,
        to: &str,
        department: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let department = department_scope(ctx, department)?;
        self.call(
            ctx,
            request_id,
            "usage.list",
            json!({"tenant": &*ctx.tenant, "department": department, "from": from, "to": to}),
        )
        .await
    }

    /// Every tenant's bill for `period` (operators).
    pub async fn all_bills(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        period: &str,
    ) -> Result<Value, GatewayError> {
        self.call(ctx, request_id, "bill.all", json!({"period": period}))
            .await
    }

    /// Freezes `period`'s bills (409 before the period has ended, or when it already is).
    pub async fn finalize(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        period: &str,
    ) -> Result<Value, GatewayError> {
        let done = self
            .call(
                ctx,
                request_id,
                "period.finalize",
                json!({"period": period}),
            )
            .await?;
        tracing::info!(period, "billing period finalized");
        Ok(done)
    }

    /// The finalized periods.
    pub async fn periods(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Value, GatewayError> {
        self.call(ctx, request_id, "periods.list", json!({})).await
    }

    /// The registered record types.
    pub async fn record_types(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Value, GatewayError> {
        self.call(ctx, request_id, "record_types.list", json!({}))
            .await
    }

    /// Registers a record type; the answer says whether it is new (`registered`).
    pub async fn register_record_type(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        definition: Value,
    ) -> Result<Value, GatewayError> {
        self.call(ctx, request_id, "record_types.register", definition)
            .await
    }
}

/// The department a request may see: the credential's, or for a tenant-wide credential the
/// one it asks for (if any).
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
