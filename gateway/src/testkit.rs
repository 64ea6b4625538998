//! The gateway over fakes, for unit tests of the stack and both front doors: the domain's
//! test world (fake providers and metering plugin, in-memory stores, a manual clock), an
//! in-memory access-key store, and requests driven through [`crate::stack::handle`] as the
//! server would, with buffered bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use skyport_auth::access_keys::memory::MemoryAccessKeys;
use skyport_auth::access_keys::AccessKeys;
use skyport_auth::jwt::JwtVerifier;
use skyport_auth::sigv4::{self, RequestParts, SignedRequest};
use skyport_auth::{Authenticator, ServiceIdentity};
use skyport_domain::operations::diagnostics::Diagnostics;
use skyport_domain::operations::images::ImageService;
use skyport_domain::operations::metering::MeteringService;
use skyport_domain::testkit::World;
use skyport_plugin_host::PluginRegistry;

use crate::api::ec2::Ec2Api;
use crate::api::native::NativeApi;
use crate::services::Services;
use crate::stack::cache::ResponseCache;
use crate::stack::limit::TenantRateLimiter;
use crate::stack::request::ConnInfo;
use crate::stack::{self, Stack};

/// A gateway over the domain's test world.
pub(crate) struct TestGateway {
    pub(crate) world: World,
    pub(crate) stack: Stack,
    pub(crate) native: NativeApi,
    pub(crate) ec2: Ec2Api,
    pub(crate) services: Arc<Services>,
}

/// A finished response, read.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Header `name`, as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read(response: Response<Full<Bytes>>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
        Err(never) => match never {},
    };
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

impl TestGateway {
    /// The embedded configuration with `edit` applied to its text.
    pub(crate) async fn with_config(edit: impl Fn(String) -> String) -> Self {
        let world = World::with_config(edit).await;
        let clock = world.clock.clone();
        let config = Arc::new(world.config.clone());
        let plugins: Arc<dyn skyport_plugin_host::Plugins> = world.plugins.clone();
        let access_keys = Arc::new(AccessKeys::new(
            Arc::new(MemoryAccessKeys::default()),
            clock.clone(),
        ));
        let services = Arc::new(Services {
            config: Arc::clone(&config),
            tenants: Arc::clone(&world.tenants),
            regions: Arc::clone(&world.regions),
            catalog: Arc::clone(&world.catalog),
            placement: Arc::clone(&world.placement),
            instances: Arc::clone(&world.instances),
            budgets: Arc::clone(&world.budgets),
            approvals: skyport_domain::approvals::ApprovalService::new(
                Arc::new(skyport_domain::approvals::memory::MemoryApprovals::default()),
                clock.clone(),
                Duration::from_secs(7 * 24 * 3600),
            ),
            events: Arc::new(skyport_domain::events::EventService::new(
                Arc::new(skyport_domain::events::memory::MemoryEvents::default()),
                clock.clone(),
            )),
            sla: Arc::new(skyport_domain::sla::SlaService::new(
                Arc::new(skyport_domain::sla::SlaRecorder::new(
                    Arc::new(skyport_domain::sla::memory::MemorySla::default()),
                    "test".into(),
                    clock.clone(),
                )),
                config.sla.availability_target,
                clock.clone(),
            )),
            sessions: Arc::new(skyport_domain::sessions::SessionService::new(
                Arc::new(skyport_domain::sessions::memory::MemorySessions::default()),
                clock.clone(),
                skyport_domain::sessions::SessionTimeouts::from(&config.console),
            )),
            deployments: skyport_domain::operations::deployments::DeploymentService::new(
                Arc::clone(&world.placement),
                Arc::clone(&world.instances),
                Arc::new(
                    skyport_domain::operations::deployments::memory::MemoryDeployments::default(),
                ),
                clock.clone(),
            ),
            key_pairs: skyport_domain::operations::key_pairs::KeyPairService::new(
                Arc::new(skyport_domain::operations::key_pairs::memory::MemoryKeyPairs::default()),
                clock.clone(),
            ),
            images: ImageService::new(Arc::clone(&plugins), Arc::clone(&world.regions)),
            metering: MeteringService::new(Arc::clone(&plugins)),
            diagnostics: Diagnostics::new(Arc::clone(&plugins)),
            access_keys: Arc::clone(&access_keys),
            sync: Arc::new(skyport_domain::inventory::sync::InventorySync::new(
                Arc::clone(&world.instances),
                Arc::clone(&plugins),
                Arc::clone(&world.metrics),
            )),
            plugins: Arc::new(PluginRegistry::empty(
                Arc::clone(&world.metrics),
                clock.clone(),
            )),
            clock: clock.clone(),
        });
        let jwt = Arc::new(JwtVerifier::new(&config.auth.jwt, Vec::new(), clock.clone()).unwrap());
        let auth = Arc::new(Authenticator::new(
            jwt,
            config.auth.mtls.admin_services.clone(),
            access_keys,
            Duration::from_secs(config.auth.sigv4.max_skew_secs),
            clock.clone(),
        ));
        let stack = Stack {
            tenants: Arc::clone(&world.tenants),
            limiter: TenantRateLimiter::from_config(&config, clock.clone()),
            cache: ResponseCache::new(1000, clock.clone()),
            tap: world.tap.clone(),
            metrics: Arc::clone(&world.metrics),
            clock,
            bodies: crate::stack::request::BodyLimits::new(
                config.server.max_buffered_body_bytes,
                Duration::from_secs(config.server.body_read_timeout_secs),
            ),
            concurrency: crate::stack::concurrency::TenantConcurrency::new(
                config.limits.max_concurrent_requests,
            ),
        };
        Self {
            native: NativeApi::new(Arc::clone(&services), Arc::clone(&auth)),
            ec2: Ec2Api::new(Arc::clone(&services), auth, Arc::clone(&world.metrics)),
            world,
            stack,
            services,
        }
    }

    /// Over the embedded configuration as shipped.
    pub(crate) async fn new() -> Self {
        Self::with_config(|c| c).await
    }

    /// `method path` on the native door by the mTLS identity `tenant`/`service` (none:
    /// anonymous), with a JSON `body`.
    pub(crate) async fn native(
        &self,
        method: &str,
        path: &str,
        caller: Option<(&str, &str)>,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let conn = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            identity: caller.map(|(tenant, service)| ServiceIdentity {
                tenant: tenant.into(),
                service: service.into(),
            }),
        };
        read(stack::handle(&self.stack, &self.native, &conn, request).await).await
    }

    /// An EC2 Query request with `params` (form-encoded), signed with SigV4 by
    /// (`key`, `secret`) for `region` at the clock's time.
    pub(crate) async fn ec2(
        &self,
        params: &[(&str, &str)],
        credentials: Option<(&str, &str)>,
        region: &str,
    ) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().copied().chain([("Version", "2016-11-15")]))
            .finish();
        let amz_date =
            humantime::format_rfc3339_seconds(skyport_core::clock::Clock::wall(&*self.world.clock))
                .to_string()
                .replace(['-', ':'], "");
        let mut request = Request::builder()
            .method("POST")
            .uri("/")
            .header("host", "skyport.test")
            .header("x-amz-date", &amz_date)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some((key, secret)) = credentials {
            let signed = SignedRequest {
                access_key_id: key.into(),
                scope_date: amz_date[..8].to_string().into(),
                region: region.into(),
                amz_date: amz_date.clone().into(),
                signed_headers: "host;x-amz-date".into(),
                signature: "".into(),
                expires: None,
            };
            let mut headers = http::HeaderMap::new();
            headers.insert("host", "skyport.test".parse().unwrap());
            headers.insert("x-amz-date", amz_date.parse().unwrap());
            let parts = RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                authority: None,
                body: body.as_bytes(),
            };
            let canonical = sigv4::canonical_request(&parts, &signed).unwrap();
            let signature =
                sigv4::sign(secret, &signed, &sigv4::string_to_sign(&signed, &canonical));
            request = request.header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={key}/{}/{region}/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}",
                    &amz_date[..8]
                ),
            );
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let conn = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            identity: None,
        };
        read(stack::handle(&self.stack, &self.ec2, &conn, request).await).await
    }

    /// A new access key of `tenant`: (id, secret).
    pub(crate) async fn access_key(&self, tenant: &str) -> (String, String) {
        let new = self
            .services
            .access_keys
            .create(tenant, None)
            .await
            .unwrap();
        (new.key.access_key_id, new.secret_access_key)
    }
}
