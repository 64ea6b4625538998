//! What a front door is to the stack: the [`FrontDoor`] trait, phase by phase, and what
//! the stack learns from a door about a route ([`RouteFacts`]) and hands it ([`Call`]).

use super::*;

/// What a write invalidates in the read cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Nothing: a read.
    Nothing,
    /// The caller's tenant's entries.
    Tenant,
    /// Every tenant's entries (a catalog change, which every tenant's offerings show).
    Everyone,
}

/// What the stack needs to know of a route once the caller is known.
#[derive(Debug, Clone, Copy)]
pub struct RouteFacts {
    /// Template for logs and metrics (never the raw path).
    pub template: &'static str,
    /// Whether the `admin` role is required.
    pub admin: bool,
    /// Whether, instead, the `approver` role of an operator tenant is enough.
    pub approvers: bool,
    /// What the request invalidates.
    pub writes: Writes,
    /// Cached for this long, when this request is a cacheable read.
    pub cache_ttl: Option<Duration>,
    /// Whether the call reads the body (read here, bounded, when it was not before).
    pub takes_body: bool,
}

/// One call into a front door, after every shared step.
pub struct Call<'a> {
    /// Who it acts for.
    pub ctx: &'a TenantContext,
    /// The request id.
    pub request_id: &'a str,
    /// Method, URI and headers.
    pub head: Parts,
    /// The body (empty unless the route takes one or authentication read it).
    pub body: Bytes,
}

/// A front door: its wire format and authentication, phase by phase.
pub trait FrontDoor: Send + Sync + 'static {
    /// What routing learned of a request, carried through the later phases.
    type Route: Send + Sync;
    /// The door's error; the stack's own refusals become it through `From`.
    type Error: From<GatewayError> + Clone + Send + Sync + 'static;

    /// Matches the request to a route before anyone is authenticated.
    fn route(&self, head: &Parts) -> Result<Self::Route, Self::Error>;

    /// Template for logs and metrics until [`FrontDoor::admit`] gives the final one.
    fn template(&self, route: &Self::Route) -> &'static str;

    /// Whether authentication reads the body (it is then read before it, bounded).
    fn body_before_auth(&self, route: &Self::Route) -> bool;

    /// What can be refused before the body is read, for doors whose authentication reads
    /// it (a missing or unknown credential): an unauthenticated caller never makes the
    /// gateway wait for, or buffer, a body. What it checked may be kept in the route for
    /// [`FrontDoor::authenticate`]. Not called for a body that came whole with its head
    /// (there is nothing to spare then): `authenticate` must judge everything itself when
    /// the route holds nothing from here.
    fn screen(
        &self,
        _route: &mut Self::Route,
        _head: &Parts,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Who is calling.
    fn authenticate(
        &self,
        route: &mut Self::Route,
        head: &Parts,
        body: &Bytes,
        conn: &ConnInfo,
    ) -> impl Future<Output = Result<Principal, Self::Error>> + Send;

    /// The route's facts once the caller is known; may still refuse (an unknown EC2
    /// action or region).
    fn admit(
        &self,
        route: &mut Self::Route,
        ctx: &TenantContext,
        head: &Parts,
        body: &Bytes,
    ) -> Result<RouteFacts, Self::Error>;

    /// The read-cache key's path and normalised query for a cacheable read (the stack
    /// adds tenant, department and generation).
    fn cache_key(&self, route: &Self::Route, head: &Parts, body: &Bytes) -> (String, String);

    /// Where a cacheable answer's body spells its request's id (EC2's `<requestId>`),
    /// found once when it is cached: a cached answer then carries each reader's own id
    /// there (as [`FrontDoor::request_id_text`] writes it), not the filling request's.
    /// `None`, the default: nowhere.
    fn request_id_in(&self, _body: &[u8]) -> Option<std::ops::Range<usize>> {
        None
    }

    /// `request_id` as the door's answers spell it in their body (escaped for XML, say).
    fn request_id_text<'i>(&self, request_id: &'i str) -> std::borrow::Cow<'i, str> {
        std::borrow::Cow::Borrowed(request_id)
    }

    /// Serves the request.
    fn call(
        &self,
        route: Self::Route,
        call: Call<'_>,
    ) -> impl Future<Output = Result<Response<Full<Bytes>>, Self::Error>> + Send;

    /// The error in the door's wire format (and logged, when it has an internal cause).
    fn render_error(&self, err: Self::Error, request_id: &str) -> Response<Full<Bytes>>;
}
