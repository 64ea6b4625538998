//! The internal operations both front ends share. The native JSON API (`api/instances`)
//! and the EC2 Query API (`api/ec2`) parse their own wire formats, call these, and render
//! the results their own way: there is one path from a tenant's request to a provider.

pub mod deployments;
pub mod instances;
pub mod keypairs;

use skyport_plugin_api::sdk::CallContext;

use crate::auth::TenantContext;

pub use instances::PROVIDER_TIMEOUT;

/// The plugin-call context of a tenant's request.
pub fn context(ctx: &TenantContext, request_id: &str) -> CallContext {
    CallContext {
        request_id: request_id.to_string(),
        tenant: Some(ctx.tenant.to_string()),
        department: ctx.department.clone(),
    }
}
