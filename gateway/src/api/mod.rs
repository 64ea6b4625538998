//! The HTTP surface on the TLS listener: route table, native API, admin API and the EC2
//! Query API.

pub mod admin;
pub mod catalog;
pub mod catalog_admin;
pub mod deployments;
pub mod ec2;
pub mod images;
pub mod instances;
pub mod keys;
pub mod metering;
pub mod native;
pub mod placement;
pub mod problem;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use crate::error::{ErrorKind, GatewayError};

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/whoami`
    Whoami,
    /// `GET /v1/providers`
    Providers,
    /// `GET /v1/regions`
    Regions,
    /// `GET /admin/plugins`
    AdminPlugins,
    /// `GET /admin/tenants`
    AdminTenants,
    /// `POST /admin/plugins/{name}/ops/{op}`: call a plugin op (operators' diagnostics).
    AdminPluginCall {
        /// Plugin instance.
        plugin: String,
        /// `op` or `op@version`.
        op: String,
    },
    /// `GET /v1/instance-types`
    InstanceTypes,
    /// `GET /v1/offerings`
    Offerings,
    /// `POST /v1/placement/explain`
    PlacementExplain,
    /// `GET /admin/placements/{id}`
    AdminPlacement(String),
    /// `/admin/{blueprints|offerings|plans}[/{name}]`: list, get, put, delete.
    AdminCatalog(crate::catalog::store::Kind, Option<String>),
    /// `GET /v1/deployments`
    DeploymentList,
    /// `POST /v1/deployments`
    DeploymentCreate,
    /// `GET /v1/deployments/{id}`
    DeploymentGet(String),
    /// `GET /v1/instances`
    InstanceList,
    /// `POST /v1/instances`
    InstanceCreate,
    /// `GET /v1/instances/{id}`
    InstanceGet(String),
    /// `POST /v1/instances/{id}/{start|stop}`, `DELETE /v1/instances/{id}` (`terminate`)
    InstanceAction(String, String),
    /// `PATCH /v1/instances/{id}`
    InstanceResize(String),
    /// `GET /v1/instances/{id}/console`
    InstanceConsole(String),
    /// `GET /v1/images`
    Images,
    /// `GET /admin/images`
    AdminImages,
    /// `GET /v1/bill`
    Bill,
    /// `GET /v1/usage`
    Usage,
    /// `GET /admin/bills`
    AdminBills,
    /// `GET /admin/periods`
    AdminPeriods,
    /// `GET /admin/record-types`
    AdminRecordTypes,
    /// `POST /admin/record-types`
    AdminRecordTypeRegister,
    /// `POST /admin/periods/{period}/finalize`
    AdminFinalize(String),
    /// `POST /admin/images`
    AdminImageRegister,
    /// `DELETE /admin/images/{name}`
    AdminImageRemove(String),
    /// `GET /admin/keys`
    AdminKeys,
    /// `POST /admin/keys`
    AdminKeyCreate,
    /// `DELETE /admin/keys/{id}`
    AdminKeyRevoke(String),
    /// `/` and `/services/compute`: the EC2 Query API.
    Ec2,
}

/// Route facts the pipeline needs.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The route.
    pub route: Route,
    /// Template for logs and metrics (never the raw path, which could explode cardinality).
    pub template: &'static str,
    /// Read-cache TTL (GET only).
    pub cache_ttl: Option<Duration>,
    /// Whether the `admin` role is required.
    pub admin: bool,
    /// Whether the request changes state (invalidates the tenant's cache entries).
    pub write: bool,
}

fn matched(route: Route, template: &'static str) -> RouteMatch {
    RouteMatch {
        route,
        template,
        cache_ttl: None,
        admin: false,
        write: false,
    }
}

/// Matches a request to a route, or 404/405.
pub fn route(method: &Method, path: &str) -> Result<RouteMatch, GatewayError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get_only = |m: RouteMatch| {
        if method == Method::GET || method == Method::HEAD {
            Ok(m)
        } else {
            Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {}", m.template),
            ))
        }
    };
    match segments.as_slice() {
        [] | ["services", "compute"] => match *method {
            Method::GET | Method::POST => Ok(matched(Route::Ec2, "/ (EC2 Query API)")),
            _ => Err(not_allowed(method, "/ (EC2 Query API)")),
        },
        ["v1", "whoami"] => get_only(matched(Route::Whoami, "/v1/whoami")),
        ["v1", "providers"] => get_only(RouteMatch {
            cache_ttl: Some(Duration::from_secs(2)),
            ..matched(Route::Providers, "/v1/providers")
        }),
        ["v1", "regions"] => get_only(RouteMatch {
            cache_ttl: Some(Duration::from_secs(10)),
            ..matched(Route::Regions, "/v1/regions")
        }),
        ["admin", "placements", id] => get_only(RouteMatch {
            admin: true,
            ..matched(
                Route::AdminPlacement((*id).to_string()),
                "/admin/placements/{id}",
            )
        }),
        ["admin", kind @ ("blueprints" | "offerings" | "plans"), rest @ ..] if rest.len() <= 1 => {
            let kind = crate::catalog::store::Kind::from_segment(kind)
                .ok_or_else(|| GatewayError::not_found(format!("no route for {path}")))?;
            let (template, allowed): (&'static str, &[Method]) = match (kind, rest.is_empty()) {
                (_, true) => ("/admin/{catalog}", &[Method::GET, Method::HEAD]),
                (_, false) => (
                    "/admin/{catalog}/{name}",
                    &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
                ),
            };
            if !allowed.contains(method) {
                return Err(not_allowed(method, template));
            }
            Ok(RouteMatch {
                admin: true,
                write: matches!(*method, Method::PUT | Method::DELETE),
                ..matched(
                    Route::AdminCatalog(kind, rest.first().map(|n| n.to_string())),
                    template,
                )
            })
        }
        ["v1", "placement", "explain"] => match *method {
            Method::POST => Ok(matched(Route::PlacementExplain, "/v1/placement/explain")),
            _ => Err(not_allowed(method, "/v1/placement/explain")),
        },
        ["v1", "offerings"] => get_only(RouteMatch {
            cache_ttl: Some(Duration::from_secs(10)),
            ..matched(Route::Offerings, "/v1/offerings")
        }),
        ["v1", "instance-types"] => get_only(RouteMatch {
            cache_ttl: Some(Duration::from_secs(60)),
            ..matched(Route::InstanceTypes, "/v1/instance-types")
        }),
        ["v1", "deployments"] => match *method {
            Method::GET => Ok(matched(Route::DeploymentList, "/v1/deployments")),
            Method::POST => Ok(RouteMatch {
                write: true,
                ..matched(Route::DeploymentCreate, "/v1/deployments")
            }),
            _ => Err(not_allowed(method, "/v1/deployments")),
        },
        ["v1", "deployments", id] => get_only(matched(
            Route::DeploymentGet(id.to_string()),
            "/v1/deployments/{id}",
        )),
        ["v1", "instances"] => match *method {
            Method::GET => Ok(matched(Route::InstanceList, "/v1/instances")),
            Method::POST => Ok(RouteMatch {
                write: true,
                ..matched(Route::InstanceCreate, "/v1/instances")
            }),
            _ => Err(not_allowed(method, "/v1/instances")),
        },
        ["v1", "instances", id] => match *method {
            Method::GET => Ok(matched(
                Route::InstanceGet(id.to_string()),
                "/v1/instances/{id}",
            )),
            Method::PATCH => Ok(RouteMatch {
                write: true,
                ..matched(Route::InstanceResize(id.to_string()), "/v1/instances/{id}")
            }),
            Method::DELETE => Ok(RouteMatch {
                write: true,
                ..matched(
                    Route::InstanceAction(id.to_string(), "terminate".into()),
                    "/v1/instances/{id}",
                )
            }),
            _ => Err(not_allowed(method, "/v1/instances/{id}")),
        },
        ["v1", "instances", id, "console"] => get_only(matched(
            Route::InstanceConsole(id.to_string()),
            "/v1/instances/{id}/console",
        )),
        ["v1", "images"] => get_only(RouteMatch {
            cache_ttl: Some(Duration::from_secs(10)),
            ..matched(Route::Images, "/v1/images")
        }),
        ["v1", "instances", id, action @ ("start" | "stop" | "reboot")] => match *method {
            Method::POST => Ok(RouteMatch {
                write: true,
                ..matched(
                    Route::InstanceAction(id.to_string(), action.to_string()),
                    "/v1/instances/{id}/{action}",
                )
            }),
            _ => Err(not_allowed(method, "/v1/instances/{id}/{action}")),
        },
        ["admin", "plugins"] => get_only(RouteMatch {
            admin: true,
            ..matched(Route::AdminPlugins, "/admin/plugins")
        }),
        ["admin", "tenants"] => get_only(RouteMatch {
            admin: true,
            ..matched(Route::AdminTenants, "/admin/tenants")
        }),
        ["v1", "bill"] => get_only(matched(Route::Bill, "/v1/bill")),
        ["v1", "usage"] => get_only(matched(Route::Usage, "/v1/usage")),
        ["admin", "bills"] => get_only(RouteMatch {
            admin: true,
            ..matched(Route::AdminBills, "/admin/bills")
        }),
        ["admin", "record-types"] => match *method {
            Method::GET => Ok(RouteMatch {
                admin: true,
                ..matched(Route::AdminRecordTypes, "/admin/record-types")
            }),
            Method::POST => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(Route::AdminRecordTypeRegister, "/admin/record-types")
            }),
            _ => Err(not_allowed(method, "/admin/record-types")),
        },
        ["admin", "periods"] => get_only(RouteMatch {
            admin: true,
            ..matched(Route::AdminPeriods, "/admin/periods")
        }),
        ["admin", "periods", period, "finalize"] => match *method {
            Method::POST => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(
                    Route::AdminFinalize(period.to_string()),
                    "/admin/periods/{period}/finalize",
                )
            }),
            _ => Err(not_allowed(method, "/admin/periods/{period}/finalize")),
        },
        ["admin", "images"] => match *method {
            Method::GET => Ok(RouteMatch {
                admin: true,
                ..matched(Route::AdminImages, "/admin/images")
            }),
            Method::POST => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(Route::AdminImageRegister, "/admin/images")
            }),
            _ => Err(not_allowed(method, "/admin/images")),
        },
        ["admin", "keys"] => match *method {
            Method::GET => Ok(RouteMatch {
                admin: true,
                ..matched(Route::AdminKeys, "/admin/keys")
            }),
            Method::POST => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(Route::AdminKeyCreate, "/admin/keys")
            }),
            _ => Err(not_allowed(method, "/admin/keys")),
        },
        ["admin", "keys", id] => match *method {
            Method::DELETE => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(Route::AdminKeyRevoke(id.to_string()), "/admin/keys/{id}")
            }),
            _ => Err(not_allowed(method, "/admin/keys/{id}")),
        },
        ["admin", "images", name] => match *method {
            Method::DELETE => Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(
                    Route::AdminImageRemove(name.to_string()),
                    "/admin/images/{name}",
                )
            }),
            _ => Err(not_allowed(method, "/admin/images/{name}")),
        },
        ["admin", "plugins", plugin, "ops", op] => {
            if method != Method::POST {
                return Err(GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    "use POST to call a plugin operation",
                ));
            }
            Ok(RouteMatch {
                admin: true,
                write: true,
                ..matched(
                    Route::AdminPluginCall {
                        plugin: plugin.to_string(),
                        op: op.to_string(),
                    },
                    "/admin/plugins/{name}/ops/{op}",
                )
            })
        }
        _ => Err(GatewayError::not_found(format!("no route for {path}"))),
    }
}

fn not_allowed(method: &Method, template: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {template}"),
    )
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_refusals() {
        assert_eq!(
            route(&Method::GET, "/v1/whoami").unwrap().route,
            Route::Whoami
        );
        assert_eq!(
            route(&Method::GET, "/v1/regions/").unwrap().route,
            Route::Regions
        );
        assert!(route(&Method::GET, "/admin/tenants").unwrap().admin);
        assert_eq!(
            route(&Method::POST, "/v1/whoami").unwrap_err().kind,
            ErrorKind::MethodNotAllowed
        );
        assert_eq!(
            route(&Method::GET, "/v2/x").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            route(&Method::POST, "/services/compute").unwrap().route,
            Route::Ec2
        );
    }
}
