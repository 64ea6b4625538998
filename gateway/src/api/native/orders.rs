//! Orders on the native API: the body of `POST /v1/instances` and
//! `POST /v1/placement/explain` (an offering and its choices, or a raw image and instance
//! type), and the placement summary a create's answer carries.

use serde::Deserialize;
use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_domain::catalog::{ParamValue, Params, RAW};
use skyport_domain::placement::{self, Decision};

/// `POST /v1/instances` body (also `POST /v1/placement/explain`'s).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    /// An offering to order; its choices go in `params`. None: a raw request, placed as
    /// the built-in offering `raw`.
    offering: Option<String>,
    /// Choices for the offering (its `user_params`).
    #[serde(default)]
    params: Params,
    image: Option<String>,
    instance_type: Option<String>,
    region: Option<String>,
    provider: Option<String>,
    /// The instance's name.
    pub(super) name: Option<String>,
    /// The instance's tags.
    #[serde(default)]
    pub(super) tags: serde_json::Map<String, Value>,
    /// The department to charge (checked against the caller's).
    pub(super) department: Option<String>,
    /// A key pair of the tenant's: its public key is authorised in the guest at first
    /// boot.
    pub(super) key_name: Option<String>,
    /// User data run at the guest's first boot, as text (the EC2 API takes it base64).
    pub(super) user_data: Option<String>,
    /// How long the instance may run before it is stopped or terminated (else its
    /// offering's lease, if any).
    pub(super) lease: Option<skyport_core::config::LeaseTerms>,
    /// An idempotency token (1-64 printable ASCII characters): the same order sent again
    /// with it answers with the instance it created instead of creating another.
    pub(super) client_token: Option<String>,
}

impl CreateRequest {
    /// The order: the offering named, else the built-in `raw` (which needs `image` and
    /// `instance_type`). Top-level `image`, `instance_type`, `region` and `provider` are
    /// choices for it, like `params`.
    pub(super) fn order(
        &mut self,
        department: Option<String>,
    ) -> Result<placement::OrderRequest, GatewayError> {
        let offering = match self.offering.take() {
            Some(offering) => offering,
            None => {
                let missing = [
                    ("image", &self.image),
                    ("instance_type", &self.instance_type),
                ]
                .into_iter()
                .find(|(field, value)| value.is_none() && !self.params.contains_key(*field));
                if let Some((field, _)) = missing {
                    return Err(GatewayError::invalid(format!(
                        "invalid instance request: missing field `{field}` (or order an offering)"
                    )));
                }
                RAW.to_string()
            }
        };
        let mut preferences = std::mem::take(&mut self.params);
        for (name, value) in [
            ("image", self.image.take()),
            ("instance_type", self.instance_type.take()),
            ("region", self.region.take()),
            ("provider", self.provider.take()),
        ] {
            let Some(value) = value else { continue };
            if preferences.contains_key(name) {
                return Err(GatewayError::invalid(format!(
                    "'{name}' is given twice, at the top level and in params"
                )));
            }
            preferences.insert(name.to_string(), ParamValue::Text(value));
        }
        Ok(placement::OrderRequest {
            offering,
            preferences,
            department,
            image_regions: None,
        })
    }
}

/// The summary of placement `id` in a create's response: where the resource went, its
/// price, and the parameter values it was created with.
pub(super) fn summary(id: &str, decision: &Decision) -> Value {
    json!({
        "id": id,
        "offering": decision.offering,
        "resource": decision.resource,
        "provider": decision.provider,
        "region": decision.region,
        "price_per_hour": decision.candidates.iter()
            .find(|c| c.lost.is_none())
            .and_then(|c| c.price.clone()),
        "currency": decision.currency,
        "rules": decision.rules.iter()
            .filter(|f| f.error.is_none())
            .map(|f| json!({"rule": f.rule, "effect": f.effect}))
            .collect::<Vec<_>>(),
        "params": decision.params.iter()
            .map(|(k, p)| (k.to_string(), json!(p.value)))
            .collect::<serde_json::Map<_, _>>(),
    })
}
