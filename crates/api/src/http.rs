//! The HTTP side: routes, authentication, the original's request and response envelopes.
//!
//! Response envelope (every answer of the document API):
//! `{"auth_token", "data", "request_id", "revision"?, "status": "success"|"error"}`, errors
//! adding `"error": "<HTTP status code>"` and `"message"`, as the original did. The token is
//! echoed like the original did, but only once it has been checked: a rejected token is
//! never reflected (answers to 401 carry `""`). It is never logged.

// Early returns carry a finished response (built once per request, off the packet
// path): boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use trunkstore_config::ids::{is_valid_id, ID_PATTERN};
use trunkstore_config::Document;

use crate::auth::Tokens;
use crate::merge::merge;
use crate::metrics::{self, ApiMetrics, MetricsSource};
use crate::registrations::RegistrationSource;
use crate::revision::revision;
use crate::store::{Expect, Store, WriteError};

/// Largest request body accepted: a connectivity document with thousands of DIDs fits.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Requests handled at once; more wait (bounds memory under a burst of large bodies).
pub(crate) const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub tokens: Tokens,
    pub metrics: ApiMetrics,
    pub sources: Vec<Arc<dyn MetricsSource>>,
    /// Are the listeners up (and not shutting down)?
    pub healthy: Box<dyn Fn() -> bool + Send + Sync>,
    /// The registrar's bindings; `None` lists nothing.
    pub registrations: Option<Arc<dyn RegistrationSource>>,
}

type St = State<Arc<Shared>>;

/// The document API plus `/metrics` and `/health`.
pub(crate) fn api_router(shared: Arc<Shared>) -> Router {
    let collection = get(list).put(create).fallback(method_not_allowed);
    let document = get(read)
        .post(replace)
        .patch(patch)
        .delete(remove)
        .fallback(method_not_allowed);
    let bindings = get(registrations).fallback(method_not_allowed);
    Router::new()
        .route("/v2/accounts/{account}/connectivity", collection)
        .route("/v2/accounts/{account}/connectivity/{id}", document)
        .route("/v2/accounts/{account}/registrations", bindings)
        .merge(observability_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), count))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .with_state(shared)
}

/// Only `/metrics` and `/health` (for `metrics.listen`).
pub(crate) fn metrics_router(shared: Arc<Shared>) -> Router {
    observability_routes()
        .fallback(not_found)
        .with_state(shared)
}

fn observability_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
}

/// Counts every response by method and status.
async fn count(State(s): St, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    s.metrics
        .record(method.as_str(), response.status().as_u16());
    response
}

async fn metrics_page(State(s): St) -> Response {
    let body = metrics::render(&s.store, &s.metrics, &s.sources);
    let ctype = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn health(State(s): St) -> Response {
    let dids = s.store.router().load().did_count();
    if (s.healthy)() {
        let body = json!({"status": "ok", "dids": dids});
        json_response(StatusCode::OK, &body)
    } else {
        let body = json!({"status": "unavailable", "dids": dids});
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
    }
}

/// `application/json` with a trailing newline (friendly to curl).
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = serde_json::to_vec(body).unwrap_or_default();
    text.push(b'\n');
    let ctype = HeaderValue::from_static("application/json");
    (status, [(header::CONTENT_TYPE, ctype)], text).into_response()
}

/// Per-request envelope fields.
struct Ctx {
    request_id: String,
    /// The checked token, echoed in the envelope; empty until checked.
    token: String,
}

impl Ctx {
    fn new(headers: &HeaderMap) -> Ctx {
        Ctx {
            request_id: request_id(headers),
            token: String::new(),
        }
    }

    fn success(&self, status: StatusCode, data: Value, revision: Option<String>) -> Response {
        let mut body = self.base(data);
        body.insert("status".into(), json!("success"));
        if let Some(r) = revision {
            body.insert("revision".into(), json!(r));
        }
        self.respond(status, body)
    }

    fn error(&self, status: StatusCode, message: &str, data: Value) -> Response {
        let mut body = self.base(data);
        body.insert("status".into(), json!("error"));
        body.insert("error".into(), json!(status.as_u16().to_string()));
        body.insert("message".into(), json!(message));
        self.respond(status, body)
    }

    fn base(&self, data: Value) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("auth_token".into(), json!(self.token));
        body.insert("data".into(), data);
        body.insert("request_id".into(), json!(self.request_id));
        body
    }

    fn respond(&self, status: StatusCode, body: Map<String, Value>) -> Response {
        let mut response = json_response(status, &Value::Object(body));
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
}

/// The client's `X-Request-ID` when it is a sane token (so logs can be correlated),
/// otherwise a fresh random one.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(v) => v.to_string(),
        None => hex::encode(rand::random::<[u8; 16]>()),
    }
}

/// 401, 403 and bad ids, in that order: nothing about an account is revealed before the
/// caller has proved it may see it.
fn authorise(
    s: &Shared,
    headers: &HeaderMap,
    account: &str,
    ctx: &mut Ctx,
) -> Result<(), Response> {
    let presented = headers.get("x-auth-token").map(HeaderValue::as_bytes);
    let Some(grant) = presented.and_then(|t| s.tokens.check(t)) else {
        let message = if presented.is_some() {
            "invalid credentials"
        } else {
            "missing credentials"
        };
        return Err(ctx.error(StatusCode::UNAUTHORIZED, message, json!({})));
    };
    // Checked above: the header is one of the configured tokens, so it is text.
    ctx.token = String::from_utf8_lossy(presented.unwrap_or_default()).into_owned();
    if !grant.allows(account) {
        let data = json!({"message": "this token may not access this account"});
        return Err(ctx.error(StatusCode::FORBIDDEN, "forbidden", data));
    }
    check_id(ctx, "account id", account)
}

fn check_id(ctx: &Ctx, what: &str, id: &str) -> Result<(), Response> {
    if is_valid_id(id) {
        return Ok(());
    }
    let data = json!({"message": format!("invalid {what}: must match {ID_PATTERN}")});
    Err(ctx.error(StatusCode::BAD_REQUEST, "bad identifier", data))
}

/// The document as the API shows it: the stored JSON plus its id.
fn shown(doc: &Document) -> Value {
    let mut value = doc.raw().clone();
    if let Value::Object(m) = &mut value {
        m.insert("id".into(), json!(doc.id));
    }
    value
}

fn not_found_doc(ctx: &Ctx, account: &str, id: &str) -> Response {
    let data = json!({"message": format!("document {account}/{id} does not exist")});
    ctx.error(StatusCode::NOT_FOUND, "bad identifier", data)
}

async fn not_found(headers: HeaderMap) -> Response {
    let ctx = Ctx::new(&headers);
    ctx.error(
        StatusCode::NOT_FOUND,
        "not found",
        json!({"message": "no such path"}),
    )
}

async fn method_not_allowed(headers: HeaderMap, request: Request) -> Response {
    let ctx = Ctx::new(&headers);
    let data = json!({"message": format!("method {} is not allowed here", request.method())});
    let mut r = ctx.error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", data);
    let path = request.uri().path();
    let allow = if path.ends_with("/connectivity") {
        "GET, PUT"
    } else if path.ends_with("/registrations") {
        "GET"
    } else {
        "GET, POST, PATCH, DELETE"
    };
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

async fn list(State(s): St, Path(account): Path<String>, headers: HeaderMap) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) = authorise(&s, &headers, &account, &mut ctx) {
        return r;
    }
    let docs = s.store.list(&account);
    // The list's revision changes whenever any of its documents does.
    let all: String = docs
        .iter()
        .map(|(id, rev)| format!("{id}:{rev};"))
        .collect();
    let ids: Vec<Value> = docs.into_iter().map(|(id, _)| json!(id)).collect();
    ctx.success(StatusCode::OK, Value::Array(ids), Some(list_revision(&all)))
}

/// A list's revision: a digest of what identifies its current content.
fn list_revision(content: &str) -> String {
    hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes())[..12])
}

/// The registrar's current bindings of the account's servers. Read-only; authorised
/// exactly like the connectivity list, and like it an account without any answers an
/// empty list (nothing tells an unknown account from one with no bindings).
async fn registrations(State(s): St, Path(account): Path<String>, headers: HeaderMap) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) = authorise(&s, &headers, &account, &mut ctx) {
        return r;
    }
    let bindings = match s.registrations.clone() {
        // The registrar's lock is shared with the packet path: read it off the async threads.
        Some(source) => {
            let a = account.clone();
            blocking(move || source.registrations(&a)).await
        }
        None => Vec::new(),
    };
    // Cannot fail: strings, numbers and booleans only.
    let data = serde_json::to_value(&bindings).unwrap_or_else(|_| json!([]));
    // Changes whenever the list does (expires_in included: it counts down).
    let revision = list_revision(&data.to_string());
    ctx.success(StatusCode::OK, data, Some(revision))
}

async fn read(
    State(s): St,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) =
        authorise(&s, &headers, &account, &mut ctx).and_then(|_| check_id(&ctx, "document id", &id))
    {
        return r;
    }
    match s.store.get(&account, &id) {
        Some(doc) => ctx.success(StatusCode::OK, shown(&doc), Some(revision(&doc))),
        None => not_found_doc(&ctx, &account, &id),
    }
}

/// A write request's content: the document and the revision the client last saw.
struct Submitted {
    document: Value,
    revision: Option<String>,
}

/// Reads and parses the body: the original's envelope `{"data": {…}, "revision"?}` or a
/// bare document. The revision may also come as `If-Match`.
async fn submitted(ctx: &Ctx, headers: &HeaderMap, body: Body) -> Result<Submitted, Response> {
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        let data = json!({"message": format!("the body is larger than {MAX_BODY_BYTES} bytes")});
        ctx.error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            data,
        )
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        let data = json!({"message": format!("malformed JSON: {e}")});
        ctx.error(StatusCode::BAD_REQUEST, "invalid json", data)
    })?;
    let mut revision = if_match(headers);
    let document = match value {
        Value::Object(mut m) if m.get("data").is_some_and(Value::is_object) => {
            if let Some(Value::String(r)) = m.get("revision") {
                revision = Some(r.clone());
            }
            m.remove("data").unwrap_or_default()
        }
        other => other,
    };
    Ok(Submitted { document, revision })
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    Some(v.trim_matches('"').to_string()).filter(|v| !v.is_empty() && v != "*")
}

/// The stored form of a submitted document: `id` is the URL's, not a field. A different
/// `id` in the body is refused rather than silently ignored.
fn without_id(ctx: &Ctx, mut document: Value, id: &str) -> Result<Value, Response> {
    if let Value::Object(m) = &mut document {
        if let Some(given) = m.remove("id") {
            if given != json!(id) {
                let mut errors = trunkstore_config::ValidationErrors::new();
                errors.add(
                    "id",
                    "pattern",
                    "id must be the document id of the URL",
                    Some(json!(id)),
                    Some(given),
                );
                return Err(ctx.error(StatusCode::BAD_REQUEST, "invalid data", errors.to_json()));
            }
        }
    }
    Ok(document)
}

fn write_result(
    ctx: &Ctx,
    ok: StatusCode,
    account: &str,
    id: &str,
    result: Result<Arc<Document>, WriteError>,
) -> Response {
    match result {
        Ok(doc) => ctx.success(ok, shown(&doc), Some(revision(&doc))),
        Err(WriteError::Invalid(errors)) => {
            ctx.error(StatusCode::BAD_REQUEST, "invalid data", errors.to_json())
        }
        Err(WriteError::NotFound) => not_found_doc(ctx, account, id),
        Err(WriteError::Conflict { current }) => {
            let data = json!({"message": "the document changed since the given revision", "revision": current});
            ctx.error(StatusCode::CONFLICT, "conflicting revision", data)
        }
        Err(WriteError::Io(e)) => {
            tracing::error!(account, id, error = %e, "cannot persist connectivity document");
            let data = json!({"message": "the document could not be saved; nothing changed"});
            ctx.error(StatusCode::INTERNAL_SERVER_ERROR, "datastore fault", data)
        }
        Err(WriteError::Unavailable(e)) => unavailable(ctx, account, id, &e),
    }
}

/// 503 when the shared document store (Redis, `cluster.store: "redis"`) did not answer.
/// A refused connection changed nothing; an answer that did not come in time may hide a
/// change that was applied (the script is atomic: all of it or none), so the body says
/// to read the document before trying again.
fn unavailable(ctx: &Ctx, account: &str, id: &str, e: &trunkstore_cluster::RedisError) -> Response {
    tracing::error!(account, id, error = %e, "shared document store unavailable");
    let message = match e {
        trunkstore_cluster::RedisError::Timeout => {
            "the shared document store (Redis) did not answer in time: the change was applied whole or not at all; read the document before trying again"
        }
        trunkstore_cluster::RedisError::Failed(_) => {
            "the shared document store (Redis) is unreachable: nothing changed"
        }
    };
    let data = json!({"message": message});
    ctx.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "datastore unavailable",
        data,
    )
}

/// Runs a store operation (file I/O, fsync, index build) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("store operation panicked")
}

fn log_write(verb: &str, account: &str, id: &str, response: &Response) {
    tracing::info!(
        verb,
        account,
        id,
        status = response.status().as_u16(),
        "connectivity document write"
    );
}

async fn create(
    State(s): St,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) = authorise(&s, &headers, &account, &mut ctx) {
        return r;
    }
    let sub = match submitted(&ctx, &headers, body).await {
        Ok(sub) => sub,
        Err(r) => return r,
    };
    // Ids are assigned here, 32 hex digits like the original's.
    let id = hex::encode(rand::random::<[u8; 16]>());
    let document = match without_id(&ctx, sub.document, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let store = s.store.clone();
    let (a, i) = (account.clone(), id.clone());
    let result = blocking(move || store.put(&a, &i, &document, Expect::Absent)).await;
    let response = write_result(&ctx, StatusCode::CREATED, &account, &id, result);
    log_write("PUT", &account, &id, &response);
    response
}

async fn replace(
    State(s): St,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write_document(s, account, id, headers, body, false).await
}

async fn patch(
    State(s): St,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write_document(s, account, id, headers, body, true).await
}

/// POST (replace) and PATCH (merge into the current content).
async fn write_document(
    s: Arc<Shared>,
    account: String,
    id: String,
    headers: HeaderMap,
    body: Body,
    merging: bool,
) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) =
        authorise(&s, &headers, &account, &mut ctx).and_then(|_| check_id(&ctx, "document id", &id))
    {
        return r;
    }
    let sub = match submitted(&ctx, &headers, body).await {
        Ok(sub) => sub,
        Err(r) => return r,
    };
    let document = match without_id(&ctx, sub.document, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let store = s.store.clone();
    let (a, i, rev) = (account.clone(), id.clone(), sub.revision);
    let result = blocking(move || {
        if merging {
            store.update(&a, &i, rev, |current| merge(current, &document))
        } else {
            store.put(&a, &i, &document, Expect::Present(rev))
        }
    })
    .await;
    let response = write_result(&ctx, StatusCode::OK, &account, &id, result);
    log_write(
        if merging { "PATCH" } else { "POST" },
        &account,
        &id,
        &response,
    );
    response
}

async fn remove(
    State(s): St,
    Path((account, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut ctx = Ctx::new(&headers);
    if let Err(r) =
        authorise(&s, &headers, &account, &mut ctx).and_then(|_| check_id(&ctx, "document id", &id))
    {
        return r;
    }
    // A DELETE may carry the envelope with a revision; an empty body is the usual case.
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
    let mut rev = if_match(&headers);
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
        if let Some(Value::String(r)) = m.get("revision") {
            rev = Some(r.clone());
        }
    }
    let store = s.store.clone();
    let (a, i) = (account.clone(), id.clone());
    let result = blocking(move || store.delete(&a, &i, rev)).await;
    let response = write_result(&ctx, StatusCode::OK, &account, &id, result);
    log_write(method.as_str(), &account, &id, &response);
    response
}
