//! Tenancy: who a verified caller is ([`Principal`]), and the one place that decides
//! whether its tenant and department exist ([`TenantDirectory::resolve`]), giving the
//! [`TenantContext`] every later step acts for. Both front ends go through it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::TenantConfig;
use crate::error::GatewayError;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// A JWT bearer token.
    Jwt,
    /// A client certificate.
    Mtls,
    /// An AWS SigV4-signed request (EC2 Query API access key).
    Sigv4,
    /// An AWS SigV2-signed request (the same access keys, older tools).
    Sigv2,
    /// A web console session (its cookie).
    Console,
}

impl IdentitySource {
    /// `jwt`, `mtls`, `sigv4`, `sigv2` or `console`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Mtls => "mtls",
            Self::Sigv4 => "sigv4",
            Self::Sigv2 => "sigv2",
            Self::Console => "console",
        }
    }
}

/// A verified caller, before the tenant context is checked.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Tenant claimed by a verified credential.
    pub tenant: String,
    /// Department, when the credential names one.
    pub department: Option<String>,
    /// Roles, e.g. `admin`.
    pub roles: Vec<String>,
    /// Subject (JWT `sub`, the mTLS service name, or the access key id).
    pub subject: String,
    /// How the identity was proven.
    pub source: IdentitySource,
}

/// Who a request acts for, after authentication and tenant checks.
#[derive(Debug, Clone)]
pub struct TenantContext {
    /// Tenant id.
    pub tenant: Arc<str>,
    /// Department, when the credential names one.
    pub department: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Subject.
    pub subject: String,
    /// How the identity was proven.
    pub source: IdentitySource,
    /// Whether the caller is an operator: the `admin` role (a token's, or an admin
    /// service's certificate) of a tenant marked `operator = true`. Only operators use the
    /// admin API, which reaches every tenant.
    pub operator: bool,
}

impl TenantContext {
    /// Whether the caller may use the admin API (see [`TenantContext::operator`]).
    pub fn is_admin(&self) -> bool {
        self.operator
    }

    /// Whether the caller may see a resource of its tenant recorded under `department`: a
    /// caller without a department sees the whole tenant, one with a department sees only
    /// that department's.
    pub fn sees_department(&self, department: Option<&str>) -> bool {
        self.department.is_none() || self.department.as_deref() == department
    }
}

/// Known tenants and their departments.
pub struct TenantDirectory {
    tenants: BTreeMap<String, TenantConfig>,
    /// Each tenant's id as shared by every context of it (no allocation per request).
    ids: BTreeMap<String, Arc<str>>,
}

impl TenantDirectory {
    /// From configuration.
    pub fn new(tenants: BTreeMap<String, TenantConfig>) -> Self {
        let ids = tenants
            .keys()
            .map(|t| (t.clone(), Arc::from(t.as_str())))
            .collect();
        Self { tenants, ids }
    }

    /// Tenant ids and their configuration.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &TenantConfig)> {
        self.tenants.iter()
    }

    /// Every tenant's configuration, by id.
    pub fn configs(&self) -> &BTreeMap<String, TenantConfig> {
        &self.tenants
    }

    /// The name of `tenant`'s plan, if it has one.
    pub fn plan_of(&self, tenant: &str) -> Option<&str> {
        self.tenants.get(tenant)?.plan.as_deref()
    }

    /// The configuration of `tenant`, if it is registered.
    pub fn get(&self, tenant: &str) -> Option<&TenantConfig> {
        self.tenants.get(tenant)
    }

    /// 400 unless `tenant` is configured and `department`, when given, is one of its own:
    /// what anything created for a tenant (an access key, an instance) must satisfy.
    pub fn check_member(&self, tenant: &str, department: Option<&str>) -> Result<(), GatewayError> {
        let config = self
            .get(tenant)
            .ok_or_else(|| GatewayError::invalid(format!("tenant '{tenant}' is not configured")))?;
        if let Some(dept) = department {
            if !config.departments.iter().any(|d| d == dept) {
                return Err(GatewayError::invalid(format!(
                    "department '{dept}' does not belong to tenant '{tenant}'"
                )));
            }
        }
        Ok(())
    }

    /// Checks `principal` against the directory.
    pub fn resolve(&self, principal: Principal) -> Result<TenantContext, GatewayError> {
        let tenant = self.get(&principal.tenant).ok_or_else(|| {
            GatewayError::forbidden(format!("tenant '{}' is not registered", principal.tenant))
        })?;
        if let Some(dept) = &principal.department {
            if !tenant.departments.iter().any(|d| d == dept) {
                return Err(GatewayError::forbidden(format!(
                    "department '{dept}' does not belong to tenant '{}'",
                    principal.tenant
                )));
            }
        }
        let operator = tenant.operator && principal.roles.iter().any(|r| r == "admin");
        Ok(TenantContext {
            operator,
            tenant: self
                .ids
                .get(&principal.tenant)
                .map_or_else(|| Arc::from(principal.tenant.as_str()), Arc::clone),
            department: principal.department,
            roles: principal.roles,
            subject: principal.subject,
            source: principal.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> TenantDirectory {
        let tenant = |operator: bool| TenantConfig {
            departments: vec!["ops".into(), "web".into()],
            operator,
            ..Default::default()
        };
        TenantDirectory::new(BTreeMap::from([
            ("ops-team".to_string(), tenant(true)),
            ("acme".to_string(), tenant(false)),
        ]))
    }

    fn principal(tenant: &str, department: Option<&str>, roles: &[&str]) -> Principal {
        Principal {
            tenant: tenant.into(),
            department: department.map(str::to_owned),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            subject: "someone".into(),
            source: IdentitySource::Jwt,
        }
    }

    #[test]
    fn only_the_admin_role_of_an_operator_tenant_is_an_operator() {
        let tenants = directory();
        let resolve = |p| tenants.resolve(p).unwrap().is_admin();
        assert!(resolve(principal("ops-team", None, &["admin"])));
        assert!(!resolve(principal("ops-team", None, &[])));
        assert!(
            !resolve(principal("acme", None, &["admin"])),
            "a tenant's own admin"
        );
    }

    #[test]
    fn a_department_caller_sees_its_department_and_a_tenant_caller_all() {
        let tenants = directory();
        let web = tenants
            .resolve(principal("acme", Some("web"), &[]))
            .unwrap();
        assert!(web.sees_department(Some("web")));
        assert!(!web.sees_department(Some("ops")));
        assert!(!web.sees_department(None));
        let whole = tenants.resolve(principal("acme", None, &[])).unwrap();
        assert!(whole.sees_department(Some("ops")) && whole.sees_department(None));
    }
}
