//! Images: every provider's bootable images for tenants, and their registration by
//! operators. Providers keep the images; the gateway only routes to whichever provider
//! serves the `images.*` ops.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skyport_core::error::GatewayError;
use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

use super::instances::PROVIDER_TIMEOUT;
use crate::call_context;
use crate::regions::Regions;

/// One image a provider offers in one of its regions.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Image name (the same name in several providers is the same image to a tenant).
    pub name: String,
    /// The provider offering it.
    pub provider: String,
    /// The region it is offered in.
    pub region: String,
    /// What the provider says of its disk (operators' detail).
    pub disk_template: Value,
    /// Where it was registered from (operators' detail).
    pub source: Value,
}

/// A registered image, as the provider reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The provider that took it.
    pub provider: String,
    /// The provider's answer (`name`, `disk_template`, `source`).
    pub image: Value,
}

/// The images of every provider.
pub struct ImageService {
    plugins: Arc<dyn Plugins>,
    regions: Arc<Regions>,
}

impl ImageService {
    /// Images of the providers in `regions`, asked through `plugins`.
    pub fn new(plugins: Arc<dyn Plugins>, regions: Arc<Regions>) -> Self {
        Self { plugins, regions }
    }

    /// Every (provider, region) whose provider serves `op@1`, healthy or not.
    fn serving(&self, op: &str) -> Vec<(String, String)> {
        let wanted = format!("{op}@1");
        let loaded = self.plugins.loaded();
        self.regions
            .sites()
            .filter(|(p, _)| loaded.iter().any(|l| l.name == *p && l.serves(&wanted)))
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect()
    }

    /// Every healthy provider's `images.list`, each image with its provider and region.
    /// An unhealthy provider offers nothing now; the others still list theirs.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Vec<Image>, GatewayError> {
        let loaded = self.plugins.loaded();
        let mut out = Vec::new();
        for (provider, region) in self.serving("images.list") {
            if loaded
                .iter()
                .any(|p| p.name == provider && !p.health.healthy)
            {
                continue;
            }
            let list = self
                .plugins
                .call(
                    &provider,
                    "images.list",
                    1,
                    json!({}),
                    call_context(ctx, request_id),
                    PROVIDER_TIMEOUT,
                )
                .await?;
            for image in list.as_array().into_iter().flatten() {
                // An image without a name can be neither ordered nor removed: listing it
                // would only mislead; the operator learns of it from the log.
                let Some(name) = image["name"].as_str().filter(|n| !n.is_empty()) else {
                    tracing::warn!(provider = %provider, "provider lists an image without a name");
                    continue;
                };
                out.push(Image {
                    name: name.to_string(),
                    provider: provider.clone(),
                    region: region.clone(),
                    disk_template: image["disk_template"].clone(),
                    source: image["source"].clone(),
                });
            }
        }
        Ok(out)
    }

    /// The provider an image operation goes to: the one named, or the only one serving
    /// `op`.
    fn target(&self, op: &str, named: Option<&str>) -> Result<String, GatewayError> {
        let mut names: Vec<String> = self.serving(op).into_iter().map(|(p, _)| p).collect();
        names.sort_unstable();
        names.dedup();
        match (named, names.as_slice()) {
            (Some(want), _) => names.iter().find(|p| *p == want).cloned().ok_or_else(|| {
                GatewayError::invalid(format!(
                    "provider '{want}' does not register images; choose one of: {}",
                    names.join(", ")
                ))
            }),
            (None, [only]) => Ok(only.clone()),
            (None, []) => Err(GatewayError::invalid("no loaded provider registers images")),
            (None, _) => Err(GatewayError::invalid(format!(
                "several providers register images; name one with \"provider\": {}",
                names.join(", ")
            ))),
        }
    }

    /// Registers an image (`params`: `name`, `kernel`, `initrd`, `disk`?: files on the
    /// Skyport host) with `provider`, or with the only provider that registers images.
    pub async fn register(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        provider: Option<&str>,
        params: Map<String, Value>,
    ) -> Result<Registered, GatewayError> {
        let provider = self.target("images.register", provider)?;
        let image = self
            .plugins
            .call(
                &provider,
                "images.register",
                1,
                Value::Object(params),
                call_context(ctx, request_id),
                PROVIDER_TIMEOUT,
            )
            .await?;
        tracing::info!(provider, image = %image["name"], "image registered");
        Ok(Registered { provider, image })
    }

    /// Removes image `name` from `provider` (or the only provider that registers images);
    /// returns the provider. 409 while a VM uses it or when the configuration names it.
    pub async fn remove(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        name: &str,
        provider: Option<&str>,
    ) -> Result<String, GatewayError> {
        let provider = self.target("images.remove", provider)?;
        self.plugins
            .call(
                &provider,
                "images.remove",
                1,
                json!({"name": name}),
                call_context(ctx, request_id),
                PROVIDER_TIMEOUT,
            )
            .await?;
        tracing::info!(provider, image = name, "image removed");
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{caller, World};

    #[tokio::test]
    async fn images_without_a_name_are_left_out_of_the_listing() {
        let world = World::new().await;
        let images = ImageService::new(world.plugins.clone(), world.regions.clone());
        let ctx = caller("acme", None);
        let listed = images.list(&ctx, "req-1").await.expect("listing");
        assert!(!listed.is_empty());
        assert!(
            listed.iter().all(|i| i.name == "skyport-tiny"),
            "{listed:?}"
        );
    }
}
