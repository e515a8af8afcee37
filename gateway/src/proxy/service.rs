//! The Pingora `ProxyHttp` service. Each hook reads what it needs from the
//! request, calls one domain function, and maps the result to a response;
//! what a request learned travels in [`RequestContext`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session as HttpSession};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use tracing::Instrument;

use super::cors::{self, CorsDecision, CorsHeaders};
use super::denial::{self, Wording};
use super::forwarded::Origin;
use super::headers::{self, IdentityHeaders};
use super::host::{self, HostError, HostFields};
use super::problem::{ErrorCode, Problem};
use super::respond::{respond, respond_preflight, respond_problem};
use super::routes::{GatewayEndpoint, Resolution};
use super::table::{LiveTable, RouteTable};
use super::trace::{TRACEPARENT, TraceHop};
use super::tunnel::Tunnel;
use crate::access::Access;
use crate::auth::Principal;
use crate::config::{RouteConfig, RoutePolicy, UpgradePolicy};
use crate::session::Session;
use crate::telemetry::spans::{RequestSpan, SpanExport};

/// The proxy service.
pub struct Gateway {
    pub(super) access: Arc<Access>,
    table: LiveTable,
    /// Where request spans go (`[tracing] otlp_endpoint`), if anywhere.
    spans: Option<Arc<SpanExport>>,
}

/// What one request learned on its way through the hooks.
#[derive(Debug)]
pub struct RequestContext {
    started: Instant,
    /// The routing table the request was routed by: a reload that swaps the
    /// table mid-request does not change the route or upstream it uses.
    table: Option<Arc<RouteTable>>,
    route: Option<usize>,
    principal: Option<Arc<Principal>>,
    session: Option<Session>,
    opened: bool,
    /// Whether the session holds a seat beyond the limit (overdraft).
    overdraft: bool,
    refusal: Option<ErrorCode>,
    /// The upgraded connection, once a `session` route's backend switched
    /// protocols: carried only while its session holds its seat.
    tunnel: Option<Arc<Tunnel>>,
    connect_attempts: usize,
    /// The gateway endpoint answered, if the request was for one.
    endpoint: Option<&'static str>,
    /// The CORS headers of an allowed cross-origin request, for whichever
    /// response it gets.
    cors: Option<CorsHeaders>,
    /// The client behind any trusted proxies, and the request id.
    origin: Option<Origin>,
    /// The gateway's hop of the request's trace.
    trace: Option<TraceHop>,
    /// The span the request's log lines are written in (its trace ids).
    span: tracing::Span,
}

impl RequestContext {
    /// The route the request matched.
    fn route(&self) -> Option<&RouteConfig> {
        let (table, index) = (self.table.as_ref()?, self.route?);
        table.routes.get(index)
    }
}

impl Gateway {
    /// The service over the access decision and a (reloadable) routing table.
    pub fn new(access: Arc<Access>, table: LiveTable) -> Self {
        Self {
            access,
            table,
            spans: None,
        }
    }

    /// The gateway, exporting its request spans; the traces it starts are
    /// then sampled.
    pub fn with_span_export(mut self, spans: Arc<SpanExport>) -> Self {
        self.spans = Some(spans);
        self
    }

    /// Lets a chunk of an upgraded connection through while its session
    /// holds its seat, and ends the connection once it does not (see
    /// [`Tunnel`]). Other bodies pass untouched.
    fn carry_tunnel(
        &self,
        body: &mut Option<bytes::Bytes>,
        ctx: &RequestContext,
    ) -> pingora::Result<()> {
        match &ctx.tunnel {
            Some(tunnel) if !tunnel.carry(&self.access) => {
                *body = None;
                Err(Error::explain(
                    ErrorType::Custom("tunnel_closed"),
                    "the session of this upgraded connection closed",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Runs the access decision of a route; `Ok` means forward.
    async fn decide(
        &self,
        route: &RouteConfig,
        session: &mut HttpSession,
        wording: &Wording,
        ctx: &mut RequestContext,
    ) -> Result<(), Problem> {
        if route.policy == RoutePolicy::Public {
            return Ok(());
        }
        let denied = |d| denial::problem(&d, wording);
        let (principal, _) = self
            .access
            .authenticate(&authorization(session.req_header()))
            .await
            .map_err(denied)?;
        self.access
            .check_scopes(&principal, &route.required_scopes)
            .map_err(denied)?;
        if route.policy == RoutePolicy::Session {
            let seated = self
                .access
                .admit(&principal, client_gone(session))
                .await
                .map_err(denied)?;
            let user_agent = session
                .req_header()
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok());
            let client = ctx.origin.as_ref().map(|o| o.client);
            self.access
                .note_client(&seated, client, user_agent)
                .await
                .map_err(denied)?;
            ctx.opened = seated.opened;
            ctx.overdraft = seated.overdraft;
            ctx.session = Some(seated.session);
        }
        ctx.principal = Some(principal);
        Ok(())
    }
}

/// Resolves when the client of a request goes away: polled only while the
/// request waits for a seat, so that it leaves the queue at once.
///
/// HTTP/2 tells by resetting the stream. HTTP/1.1 tells by closing the
/// connection, which a read finds once the request body is read (or there
/// is none); a request whose body is still on its way is not read from
/// here, as that would eat the body, so it waits until `max_wait`.
async fn client_gone(session: &mut HttpSession) {
    if let Some(reset) = session.watch_h2_stream_close() {
        let _ = reset.await;
        return;
    }
    if (session.is_body_empty() || session.is_body_done())
        && session.read_body_or_idle(true).await.is_err()
    {
        return;
    }
    std::future::pending().await
}

/// Every `Authorization` header of a request (more than one is refused).
pub(super) fn authorization(request: &RequestHeader) -> Vec<&[u8]> {
    request
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}

/// Whether the request asks to upgrade its connection. Any `Upgrade` field
/// counts, with or without `Connection: upgrade`: a backend or a proxy in
/// between may act on it either way.
fn wants_upgrade(request: &RequestHeader) -> bool {
    request.headers.contains_key(http::header::UPGRADE)
}

/// The host the request is for, validated (see [`host`]).
fn request_host(request: &RequestHeader) -> Result<Option<String>, HostError> {
    let fields: Vec<&[u8]> = request
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    host::request_host(HostFields {
        host_required: request.version >= http::Version::HTTP_11,
        host_fields: &fields,
        target: request.raw_path(),
        uri_authority: request.uri.authority().map(|a| a.as_str()),
    })
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    /// No downstream modules: Pingora's default adds a response-compression
    /// module (disabled) that every request would still pass through, and
    /// the gateway compresses nothing.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            started: Instant::now(),
            table: None,
            route: None,
            principal: None,
            session: None,
            opened: false,
            overdraft: false,
            refusal: None,
            tunnel: None,
            connect_attempts: 0,
            endpoint: None,
            cors: None,
            origin: None,
            trace: None,
            span: tracing::Span::none(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut HttpSession,
        ctx: &mut RequestContext,
    ) -> pingora::Result<bool> {
        let table = self.table.load_full();
        ctx.origin = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|peer| {
                table
                    .forwarding
                    .origin(peer.ip(), &session.req_header().headers)
            });
        let hop = TraceHop::of(&session.req_header().headers, self.spans.is_some());
        ctx.span = tracing::info_span!("request", trace_id = %hop.trace_id, span_id = %hop.span_id);
        ctx.trace = Some(hop);
        let request = session.req_header();
        ctx.table = Some(Arc::clone(&table));
        // The host is checked before routing: a malformed one must not
        // fall through to a host-less catch-all route.
        let resolution = request_host(request)
            .map(|host| table.router.resolve(host.as_deref(), request.uri.path()));
        let outcome = match resolution {
            Err(e) => Err(Problem::new(ErrorCode::BadRequest, e.to_string())),
            Ok(Resolution::BadPath(reason)) => Err(Problem::new(ErrorCode::BadRequest, reason)),
            Ok(Resolution::NotFound) => Err(Problem::new(
                ErrorCode::NotFound,
                "no route for this host and path",
            )),
            Ok(Resolution::Gateway(GatewayEndpoint::BackchannelLogout)) => {
                ctx.endpoint = Some("gateway:backchannel-logout");
                self.backchannel_endpoint(session).await?;
                return Ok(true);
            }
            Ok(Resolution::Gateway(endpoint)) => {
                let answer = match endpoint {
                    GatewayEndpoint::Session => {
                        ctx.endpoint = Some("gateway:session");
                        self.session_endpoint(request, &table.wording).await
                    }
                    GatewayEndpoint::Logout => {
                        ctx.endpoint = Some("gateway:logout");
                        self.logout_endpoint(request, &table.wording).await
                    }
                    // Answered by the arm above, which reads the body.
                    GatewayEndpoint::BackchannelLogout => Err(Problem::new(
                        ErrorCode::NotFound,
                        "no such gateway endpoint",
                    )),
                };
                match answer {
                    Ok(body) => {
                        respond(session, 200, "application/json", body, None).await?;
                        return Ok(true);
                    }
                    Err(problem) => Err(problem),
                }
            }
            Ok(Resolution::Route(index)) => {
                ctx.route = Some(index);
                let request = session.req_header();
                let cors = table
                    .routes
                    .get(index)
                    .and_then(|route| route.cors.as_ref())
                    .map_or(CorsDecision::NotCors, |policy| {
                        cors::decide(policy, request)
                    });
                match (table.routes.get(index), cors) {
                    (None, _) => Err(Problem::new(ErrorCode::NotFound, "no route")),
                    // Before the token check: asking opens no session.
                    (Some(_), CorsDecision::Preflight(mut headers)) => {
                        ctx.endpoint = Some("cors_preflight");
                        headers.extend(request_id(&table, ctx));
                        respond_preflight(session, &headers).await?;
                        return Ok(true);
                    }
                    (Some(_), CorsDecision::Refused(reason)) => {
                        Err(Problem::new(ErrorCode::CorsRefused, reason))
                    }
                    (Some(route), decision) => {
                        if let CorsDecision::Allowed(headers) = decision {
                            ctx.cors = Some(headers);
                        }
                        // Before the access decision: a refused upgrade opens no session.
                        if route.upgrades == UpgradePolicy::Refuse && wants_upgrade(request) {
                            Err(Problem::new(
                                ErrorCode::UpgradeRefused,
                                "this route does not allow protocol upgrades",
                            ))
                        } else {
                            let span = ctx.span.clone();
                            self.decide(route, session, &table.wording, ctx)
                                .instrument(span)
                                .await
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(()) => Ok(false),
            Err(mut problem) => {
                ctx.refusal = Some(problem.code);
                // A script of an allowed origin may read the refusal too.
                if let Some(headers) = &ctx.cors {
                    problem.headers.extend(headers.iter().cloned());
                }
                problem.headers.extend(request_id(&table, ctx));
                respond_problem(session, &problem).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut HttpSession,
        ctx: &mut RequestContext,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.connect_attempts += 1;
        let upstream = ctx
            .table
            .as_ref()
            .zip(ctx.route())
            .and_then(|(table, route)| table.upstreams.get(route.upstream))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let mut peer = upstream
            .peer(&ctx.connect_attempts.to_le_bytes())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("no healthy server in `{}`", upstream.name),
                )
            })?;
        if let Some(timeouts) = ctx.route().map(|r| r.timeouts) {
            super::route_timeouts::apply(&timeouts, &mut peer.options, ctx.started)?;
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut HttpSession,
        _peer: &HttpPeer,
        ctx: &mut RequestContext,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try the next server of the group once: a connect failure never
        // reached the backend, so retrying is safe for any method.
        if ctx.connect_attempts < 2 {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut HttpSession,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> pingora::Result<()> {
        let (Some(table), Some(route)) = (ctx.table.as_ref(), ctx.route()) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no route in context",
            ));
        };
        let identity = IdentityHeaders {
            principal: ctx.principal.as_deref(),
            session: ctx.session.as_ref(),
            overdraft: ctx.overdraft,
        };
        headers::rewrite(
            upstream_request,
            &table.headers,
            &identity,
            &route.authorization,
        );
        // What the client said about its own address never reaches the
        // backend; the chain the gateway believes does.
        if let Some(origin) = &ctx.origin {
            for (name, value) in origin.upstream_headers(&table.forwarding) {
                upstream_request.remove_header(&name);
                upstream_request.insert_header(name, value)?;
            }
        }
        if let Some(hop) = &ctx.trace {
            upstream_request.insert_header(TRACEPARENT, hop.traceparent())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut HttpSession,
        response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestContext,
    ) -> pingora::Result<()> {
        // A `session` route's backend switched protocols: from now on the
        // connection is a tunnel on this request's session.
        if response.status == http::StatusCode::SWITCHING_PROTOCOLS
            && let Some(seated) = &ctx.session
        {
            ctx.tunnel = Some(Tunnel::open(seated.clone(), &self.access));
        }
        if let Some(headers) = &ctx.cors {
            cors::mark_response(response, headers)?;
        }
        if let Some(table) = &ctx.table
            && let Some((name, value)) = request_id(table, ctx)
        {
            response.insert_header(name, value)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut HttpSession,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> pingora::Result<()> {
        self.carry_tunnel(body, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut HttpSession,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> pingora::Result<Option<std::time::Duration>> {
        // A response still streaming past its route's total ends (an
        // upgraded connection is not bounded: it lives as its session does).
        if ctx.tunnel.is_none()
            && ctx
                .route()
                .is_some_and(|r| super::route_timeouts::is_past_total(&r.timeouts, ctx.started))
        {
            return Err(super::route_timeouts::past_total());
        }
        self.carry_tunnel(body, ctx).map(|()| None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut HttpSession,
        e: &Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        if ctx.tunnel.as_ref().is_some_and(|t| t.has_ended()) {
            // The gateway ended the tunnel itself: nothing failed upstream.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let problem = match e.etype() {
            ErrorType::HTTPStatus(code) => {
                Some(Problem::new(ErrorCode::BadRequest, "bad request").with_status(*code))
            }
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() != &ErrorSource::Downstream =>
            {
                Some(Problem::new(
                    ErrorCode::UpstreamTimeout,
                    "the upstream did not answer in time",
                ))
            }
            _ => match e.esource() {
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        None
                    }
                    _ => Some(Problem::new(
                        ErrorCode::BadRequest,
                        "the request could not be read",
                    )),
                },
                _ => Some(Problem::new(
                    ErrorCode::UpstreamUnavailable,
                    "the upstream could not be reached",
                )),
            },
        };
        let mut code = 0;
        if let Some(problem) = problem {
            // Pingora closes the client connection after a failed proxy
            // attempt; say so in the response instead of resetting a
            // connection the client believes is reusable.
            session.set_keepalive(None);
            code = problem.status;
            ctx.refusal = Some(problem.code);
            let kind = match problem.code {
                ErrorCode::UpstreamTimeout => Some("timeout"),
                ErrorCode::UpstreamUnavailable => Some("unavailable"),
                _ => None,
            };
            let upstream = ctx
                .table
                .as_ref()
                .zip(ctx.route())
                .and_then(|(table, route)| table.upstreams.get(route.upstream));
            if let (Some(kind), Some(upstream)) = (kind, upstream) {
                let upstream = upstream.name.as_str();
                self.access
                    .metrics()
                    .upstream_errors
                    .with_label_values(&[upstream, kind])
                    .inc();
            }
            if session.response_written().is_none()
                && let Err(write_error) = respond_problem(session, &problem).await
            {
                tracing::debug!(error = %write_error, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(
        &self,
        session: &mut HttpSession,
        error: Option<&Error>,
        ctx: &mut RequestContext,
    ) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let request = session.req_header();
        let route_config = ctx.route();
        let route = route_config.map_or("", |r| r.name.as_str());
        // Requests that matched no route share one label, so a scan of random
        // paths cannot grow the metric's cardinality.
        let (route_label, policy) = match (route_config, ctx.endpoint) {
            (Some(r), _) => (r.name.as_str(), r.policy.as_str()),
            (None, Some(endpoint)) => (endpoint, "gateway"),
            (None, None) => ("-", "-"),
        };
        let tunnel_ended = ctx.tunnel.as_ref().is_some_and(|t| t.has_ended());
        let outcome = match (ctx.refusal, error, ctx.endpoint) {
            (Some(code), _, _) => code.as_str(),
            (None, _, _) if tunnel_ended => "tunnel_closed",
            (None, Some(_), _) => "error",
            (None, None, Some(_)) => "answered",
            (None, None, None) => "forwarded",
        };
        let metrics = self.access.metrics();
        let meter = match (ctx.table.as_ref(), ctx.route) {
            (Some(table), Some(index)) => table.meter(index, metrics),
            _ => None,
        };
        let elapsed = ctx.started.elapsed().as_secs_f64();
        let class = super::table::status_class(status);
        match meter {
            Some(meter) if outcome == "forwarded" => meter.forwarded[class].inc(),
            _ => metrics
                .requests
                .with_label_values(&[
                    route_label,
                    policy,
                    outcome,
                    super::table::STATUS_CLASSES[class],
                ])
                .inc(),
        }
        match meter {
            Some(meter) => meter.duration.observe(elapsed),
            None => metrics
                .request_duration
                .with_label_values(&[route_label, policy])
                .observe(elapsed),
        }
        let principal_subject = ctx
            .principal
            .as_ref()
            .and_then(|p| p.claims.subject())
            .unwrap_or("");
        tracing::info!(
            target: "access",
            method = %request.method,
            path = request.uri.path(),
            route,
            status,
            client = ctx.origin.as_ref().map_or_else(String::new, |o| o.client.to_string()),
            trace_id = ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
            span_id = ctx.trace.as_ref().map_or("", |t| t.span_id.as_str()),
            request_id = ctx
                .origin
                .as_ref()
                .and_then(|o| o.request_id.to_str().ok())
                .unwrap_or(""),
            latency_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            session_id = ctx.session.as_ref().map_or("", |s| s.id.as_str()),
            pool = ctx.session.as_ref().map_or("", |s| s.pool.as_str()),
            subject = principal_subject,
            opened = ctx.opened,
            refusal = ctx.refusal.map_or("", |c| c.as_str()),
            error = error.map(|e| e.etype().as_str()).unwrap_or(""),
            "request"
        );
        if let (Some(spans), Some(hop)) = (&self.spans, &ctx.trace) {
            spans.record(&RequestSpan {
                trace_id: &hop.trace_id,
                span_id: &hop.span_id,
                parent_id: hop.parent_id.as_deref(),
                sampled: hop.is_sampled(),
                elapsed: ctx.started.elapsed(),
                method: request.method.as_str(),
                path: request.uri.path(),
                route,
                status,
                outcome,
                pool: ctx.session.as_ref().map(|s| s.pool.as_str()),
            });
        }
    }
}

/// The request id header for a response: the id the request was given.
fn request_id(
    table: &RouteTable,
    ctx: &RequestContext,
) -> Option<(http::HeaderName, http::HeaderValue)> {
    ctx.origin.as_ref().map(|origin| {
        (
            table.forwarding.request_id_header.clone(),
            origin.request_id.clone(),
        )
    })
}
