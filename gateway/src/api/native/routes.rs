//! The native API's route table (`/v1/*` for tenants, `/admin/*` for operators): one line
//! per route, with everything the stack needs to know of it. Adding a route is one line
//! here and its handler.

use std::sync::LazyLock;
use std::time::Duration;

use http::Method;

use super::{
    admin, approvals, budgets, catalog, deployments, identity, images, instances, keys, metering,
    sla, webhooks,
};
use super::{placement, Handler};
use crate::stack::Writes;

/// One route.
pub(crate) struct Route {
    /// Methods it answers (GET routes answer HEAD too).
    pub(crate) methods: &'static [Method],
    /// Path pattern: literal segments and `{name}` parameters; `{name=a|b}` matches only
    /// `a` or `b`.
    pub(crate) pattern: &'static str,
    /// Template for logs, metrics and refusals (the pattern without its alternatives).
    pub(crate) template: &'static str,
    /// Whether the `admin` role is required.
    pub(crate) admin: bool,
    /// Whether the `approver` role of an operator tenant is enough (the approval queue).
    pub(crate) approvers: bool,
    /// What it invalidates in the read cache.
    pub(crate) writes: Writes,
    /// Read-cache TTL of its GETs.
    pub(crate) cache_ttl: Option<Duration>,
    /// Whether its handler reads the body.
    pub(crate) takes_body: bool,
    /// Its handler.
    pub(crate) handler: Handler,
}

const GET: &[Method] = &[Method::GET, Method::HEAD];

const fn route(methods: &'static [Method], pattern: &'static str, handler: Handler) -> Route {
    Route {
        methods,
        pattern,
        template: pattern,
        admin: false,
        approvers: false,
        writes: Writes::Nothing,
        cache_ttl: None,
        takes_body: false,
        handler,
    }
}

/// A read.
const fn get(pattern: &'static str, handler: Handler) -> Route {
    route(GET, pattern, handler)
}

/// A read cached for `secs` seconds per tenant.
const fn cached(pattern: &'static str, secs: u64, handler: Handler) -> Route {
    Route {
        cache_ttl: Some(Duration::from_secs(secs)),
        ..get(pattern, handler)
    }
}

/// A write of `method` that invalidates the caller's cached reads; `body`: it reads one.
const fn write(
    method: &'static [Method],
    pattern: &'static str,
    body: bool,
    handler: Handler,
) -> Route {
    Route {
        writes: Writes::Tenant,
        takes_body: body,
        ..route(method, pattern, handler)
    }
}

/// A POST that reads a body and changes nothing (an explanation).
const fn post(pattern: &'static str, handler: Handler) -> Route {
    Route {
        takes_body: true,
        ..route(POST, pattern, handler)
    }
}

/// Operators only.
const fn admin(route: Route) -> Route {
    Route {
        admin: true,
        ..route
    }
}

/// Operators, or approvers (the `approver` role of an operator tenant).
const fn approvers(route: Route) -> Route {
    Route {
        admin: true,
        approvers: true,
        ..route
    }
}

/// Shown as `template` in logs, metrics and refusals.
const fn shown_as(template: &'static str, route: Route) -> Route {
    Route { template, ..route }
}

const POST: &[Method] = &[Method::POST];
const PUT: &[Method] = &[Method::PUT];
const PATCH: &[Method] = &[Method::PATCH];
const DELETE: &[Method] = &[Method::DELETE];

macro_rules! h {
    ($handler:path) => {
        |api, call| Box::pin($handler(api, call))
    };
}

/// Every route; the first whose pattern and method match serves.
pub(crate) static ROUTES: &[Route] = &[
    get("/v1/whoami", h!(identity::whoami)),
    cached("/v1/providers", 2, h!(identity::providers)),
    cached("/v1/regions", 10, h!(identity::regions)),
    cached("/v1/instance-types", 60, h!(instances::instance_types)),
    cached("/v1/offerings", 10, h!(catalog::offerings)),
    cached("/v1/images", 10, h!(images::list)),
    post("/v1/placement/explain", h!(placement::explain)),
    get("/v1/instances", h!(instances::list)),
    write(POST, "/v1/instances", true, h!(instances::create)),
    get("/v1/instances/{id}", h!(instances::get)),
    write(PATCH, "/v1/instances/{id}", true, h!(instances::resize)),
    write(
        DELETE,
        "/v1/instances/{id}",
        false,
        h!(instances::terminate),
    ),
    get("/v1/instances/{id}/console", h!(instances::console)),
    write(
        PUT,
        "/v1/instances/{id}/tags",
        true,
        h!(instances::put_tags),
    ),
    write(
        POST,
        "/v1/instances/{id}/lease",
        true,
        h!(instances::extend_lease),
    ),
    shown_as(
        "/v1/instances/{id}/{action}",
        write(
            POST,
            "/v1/instances/{id}/{action=start|stop|reboot}",
            false,
            h!(instances::act),
        ),
    ),
    get("/v1/deployments", h!(deployments::list)),
    write(POST, "/v1/deployments", true, h!(deployments::create)),
    get("/v1/deployments/{id}", h!(deployments::get)),
    get("/v1/bill", h!(metering::bill)),
    get("/v1/budgets", h!(budgets::list)),
    get("/v1/orders", h!(approvals::list)),
    get("/v1/orders/{id}", h!(approvals::get)),
    approvers(get("/admin/orders", h!(approvals::queue))),
    approvers(write(
        POST,
        "/admin/orders/{id}/approve",
        true,
        h!(approvals::approve),
    )),
    approvers(write(
        POST,
        "/admin/orders/{id}/deny",
        true,
        h!(approvals::deny),
    )),
    get("/v1/webhooks", h!(webhooks::list)),
    write(POST, "/v1/webhooks", true, h!(webhooks::subscribe)),
    get("/v1/webhooks/{id}", h!(webhooks::get)),
    write(DELETE, "/v1/webhooks/{id}", false, h!(webhooks::delete)),
    get("/v1/webhooks/{id}/deliveries", h!(webhooks::deliveries)),
    admin(get("/admin/sla", h!(sla::report))),
    admin(get("/admin/webhooks", h!(webhooks::admin_list))),
    admin(write(
        POST,
        "/admin/webhooks",
        true,
        h!(webhooks::admin_subscribe),
    )),
    admin(get(
        "/admin/webhooks/deliveries",
        h!(webhooks::admin_deliveries),
    )),
    admin(write(
        POST,
        "/admin/webhooks/deliveries/{id}/retry",
        false,
        h!(webhooks::admin_retry),
    )),
    admin(write(
        DELETE,
        "/admin/webhooks/{id}",
        false,
        h!(webhooks::admin_delete),
    )),
    get("/v1/usage", h!(metering::usage)),
    admin(get("/admin/plugins", h!(admin::plugins))),
    admin(write(
        POST,
        "/admin/plugins/{name}/ops/{op}",
        true,
        h!(admin::call_plugin),
    )),
    admin(Route {
        writes: Writes::Everyone,
        ..write(
            POST,
            "/admin/plugins/{name}/reload",
            false,
            h!(admin::reload_plugin),
        )
    }),
    admin(get(
        "/admin/providers/{name}/unmanaged",
        h!(admin::unmanaged),
    )),
    admin(Route {
        writes: Writes::Everyone,
        ..write(
            POST,
            "/admin/providers/{name}/unmanaged/{id}/adopt",
            true,
            h!(admin::adopt),
        )
    }),
    admin(get("/admin/tenants", h!(admin::tenants))),
    admin(get("/admin/placements", h!(placement::search))),
    admin(get("/admin/placements/{id}", h!(placement::record))),
    admin(shown_as(
        "/admin/{catalog}",
        get(
            "/admin/{catalog=blueprints|offerings|plans|budgets}",
            h!(catalog::admin_list),
        ),
    )),
    admin(shown_as(
        "/admin/{catalog}/{name}",
        get(
            "/admin/{catalog=blueprints|offerings|plans|budgets}/{name}",
            h!(catalog::admin_get),
        ),
    )),
    admin(shown_as(
        "/admin/{catalog}/{name}",
        Route {
            writes: Writes::Everyone,
            ..write(
                PUT,
                "/admin/{catalog=blueprints|offerings|plans|budgets}/{name}",
                true,
                h!(catalog::admin_put),
            )
        },
    )),
    admin(shown_as(
        "/admin/{catalog}/{name}",
        Route {
            writes: Writes::Everyone,
            ..write(
                DELETE,
                "/admin/{catalog=blueprints|offerings|plans|budgets}/{name}",
                false,
                h!(catalog::admin_delete),
            )
        },
    )),
    admin(get("/admin/images", h!(images::admin_list))),
    admin(write(POST, "/admin/images", true, h!(images::register))),
    admin(write(
        DELETE,
        "/admin/images/{name}",
        false,
        h!(images::remove),
    )),
    admin(get("/admin/bills", h!(metering::admin_bills))),
    admin(get("/admin/periods", h!(metering::periods))),
    admin(write(
        POST,
        "/admin/periods/{period}/finalize",
        false,
        h!(metering::finalize),
    )),
    admin(get("/admin/record-types", h!(metering::record_types))),
    admin(write(
        POST,
        "/admin/record-types",
        true,
        h!(metering::register_record_type),
    )),
    get("/v1/keys", h!(keys::tenant_list)),
    write(POST, "/v1/keys", true, h!(keys::tenant_create)),
    write(DELETE, "/v1/keys/{id}", false, h!(keys::tenant_revoke)),
    admin(get("/admin/keys", h!(keys::list))),
    admin(write(POST, "/admin/keys", true, h!(keys::create))),
    admin(write(DELETE, "/admin/keys/{id}", false, h!(keys::revoke))),
];

/// What matching a request found.
pub(crate) enum Matched {
    /// A route, with its path parameters in order.
    Route(&'static Route, Vec<String>),
    /// The path has routes, none for this method; the first one's template.
    MethodNotAllowed(&'static str),
    /// No route has this path.
    NotFound,
}

/// One segment of a route's pattern.
enum Part {
    /// Matches itself.
    Literal(&'static str),
    /// Matches any non-empty segment, or only the alternatives given.
    Param(Option<Vec<&'static str>>),
}

/// Every route with its pattern split into parts, once.
static COMPILED: LazyLock<Vec<(&'static Route, Vec<Part>)>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|route| {
            let parts = route
                .pattern
                .split('/')
                .skip(1)
                .map(
                    |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                        Some(param) => Part::Param(
                            param
                                .split_once('=')
                                .map(|(_, allowed)| allowed.split('|').collect()),
                        ),
                        None => Part::Literal(part),
                    },
                )
                .collect();
            (route, parts)
        })
        .collect()
});

/// The deepest path any route has.
const MAX_SEGMENTS: usize = 8;

/// The route for `method` on `path`.
pub(crate) fn find(method: &Method, path: &str) -> Matched {
    // The path's segments, split once, without allocating.
    let mut segments = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in path.trim_end_matches('/').split('/').skip(1) {
        if count == MAX_SEGMENTS {
            return Matched::NotFound;
        }
        segments[count] = segment;
        count += 1;
    }
    let segments = &segments[..count];
    let mut path_known = None;
    for (route, parts) in COMPILED.iter() {
        if !matches(parts, segments) {
            continue;
        }
        if route.methods.contains(method) {
            let params = parts
                .iter()
                .zip(segments)
                .filter(|(part, _)| matches!(part, Part::Param(_)))
                .map(|(_, segment)| (*segment).to_string())
                .collect();
            return Matched::Route(route, params);
        }
        path_known.get_or_insert(route.template);
    }
    match path_known {
        Some(template) => Matched::MethodNotAllowed(template),
        None => Matched::NotFound,
    }
}

/// Whether `segments` match the pattern `parts`.
fn matches(parts: &[Part], segments: &[&str]) -> bool {
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(part, segment)| match part {
                Part::Literal(literal) => literal == segment,
                // An empty id still names the route: its handler says what is wrong
                // with it (400), which a 404 would not.
                Part::Param(None) => true,
                Part::Param(Some(allowed)) => allowed.contains(segment),
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(method: Method, path: &str) -> Result<&'static str, String> {
        match find(&method, path) {
            Matched::Route(route, _) => Ok(route.template),
            Matched::MethodNotAllowed(t) => Err(format!("405 {t}")),
            Matched::NotFound => Err("404".into()),
        }
    }

    #[test]
    fn routes_and_refusals() {
        assert_eq!(template(Method::GET, "/v1/whoami"), Ok("/v1/whoami"));
        assert_eq!(template(Method::GET, "/v1/regions/"), Ok("/v1/regions"));
        assert_eq!(template(Method::HEAD, "/v1/regions"), Ok("/v1/regions"));
        assert_eq!(
            template(Method::POST, "/v1/whoami"),
            Err("405 /v1/whoami".into())
        );
        assert_eq!(template(Method::GET, "/v2/x"), Err("404".into()));
        assert_eq!(
            template(Method::GET, "/v1/instances//console"),
            Ok("/v1/instances/{id}/console")
        );
        assert_eq!(
            template(Method::POST, "/v1/instances/i-1/stop"),
            Ok("/v1/instances/{id}/{action}")
        );
        assert_eq!(
            template(Method::POST, "/v1/instances/i-1/dance"),
            Err("404".into())
        );
        assert_eq!(
            template(Method::POST, "/v1/instances/i-1/console"),
            Err("405 /v1/instances/{id}/console".into())
        );
        assert_eq!(
            template(Method::PUT, "/admin/offerings/big"),
            Ok("/admin/{catalog}/{name}")
        );
        assert_eq!(template(Method::GET, "/admin/widgets"), Err("404".into()));
        assert_eq!(
            template(Method::PUT, "/admin/tenants"),
            Err("405 /admin/tenants".into())
        );
    }

    #[test]
    fn parameters_come_in_order_and_admin_routes_are_marked() {
        let Matched::Route(route, params) = find(&Method::POST, "/admin/plugins/echo/ops/ping@1")
        else {
            panic!("no route");
        };
        assert!(route.admin);
        assert_eq!(params, ["echo", "ping@1"]);
        for route in ROUTES {
            assert_eq!(
                route.pattern.starts_with("/admin/"),
                route.admin,
                "{}",
                route.pattern
            );
            assert_eq!(
                route.approvers,
                route.pattern.starts_with("/admin/orders"),
                "only the approval queue is open to approvers: {}",
                route.pattern
            );
        }
    }
}
