//! Trace context over gRPC: a tower layer for servers ([`ServerTraceLayer`]) that continues
//! the caller's trace from the request headers, and one for clients ([`ClientTraceLayer`])
//! that writes the current trace into the headers of every call.
//!
//! With tracing on, the server layer records one span per call (`rpc.*` attributes, the
//! gRPC status when the call failed before any message) and runs the handler inside its
//! context, so calls the handler makes through a traced client hang below it; log lines of
//! the handler carry the `trace_id`. With tracing off, a context that arrives is still
//! passed on, so a traced caller's trace is not cut by an untraced service in the middle.
//!
//! A streaming call's span covers the call up to its response headers, not the whole stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::otel::{self, Tracing, TRACEPARENT};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

/// `/proact.v1.Archive/QueryRange` → the `rpc.service` and `rpc.method` attributes.
fn rpc_attributes(path: &str) -> Vec<KeyValue> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_string()),
        KeyValue::new("rpc.method", method.to_string()),
    ]
}

/// Continues the caller's trace in every call a server handles.
#[derive(Clone, Debug)]
pub struct ServerTraceLayer {
    tracing: Tracing,
}

impl ServerTraceLayer {
    pub fn new(tracing: Tracing) -> Self {
        Self { tracing }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner, tracing: self.tracing.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    tracing: Tracing,
}

impl<S, B, R> Service<Request<B>> for ServerTrace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was not polled stays; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let parent = if req.headers().contains_key(TRACEPARENT) {
            otel::extract(&HeaderExtractor(req.headers()))
        } else {
            Context::new()
        };
        let path = req.uri().path().to_string();
        match self.tracing.child(path.clone(), SpanKind::Server, rpc_attributes(&path), &parent) {
            Some(mut span) => {
                let cx = span.context();
                let log_span = tracing::info_span!("grpc", method = %path, trace_id = %span.trace_id());
                let call = inner.call(req);
                Box::pin(async move {
                    let result = call.with_context(cx).instrument(log_span).await;
                    match &result {
                        Ok(resp) => {
                            // Set in the headers only when the call ended before any message.
                            if let Some(code) = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
                                span.set_attribute(KeyValue::new("rpc.grpc.status_code", code.to_string()));
                                if code != "0" {
                                    span.set_error(format!("grpc-status {code}"));
                                }
                            }
                        }
                        Err(_) => span.set_error("transport error"),
                    }
                    span.end();
                    result
                })
            }
            None if parent.span().span_context().is_valid() => Box::pin(inner.call(req).with_context(parent)),
            None => Box::pin(inner.call(req)),
        }
    }
}

/// Writes the current trace into the headers of every call a client makes.
#[derive(Clone, Debug)]
pub struct ClientTraceLayer {
    tracing: Tracing,
}

impl ClientTraceLayer {
    pub fn new(tracing: Tracing) -> Self {
        Self { tracing }
    }
}

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner, tracing: self.tracing.clone(), authorization: None }
    }
}

/// A traced client transport: `XClient::new(ClientTrace::new(channel, tracing))`; with
/// [`ClientTrace::with_token`], every call also carries `authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
    tracing: Tracing,
    authorization: Option<HeaderValue>,
}

impl<S> ClientTrace<S> {
    pub fn new(inner: S, tracing: Tracing) -> Self {
        Self { inner, tracing, authorization: None }
    }

    /// Sends `token` as a bearer token on every call (`None`: no header). A token that cannot
    /// be a header value is refused here, not by the server.
    pub fn with_token(mut self, token: Option<&str>) -> Result<Self, http::header::InvalidHeaderValue> {
        self.authorization = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(self)
    }
}

impl<S, B, R> Service<Request<B>> for ClientTrace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let current = Context::current();
        if let Some(auth) = &self.authorization {
            req.headers_mut().insert(http::header::AUTHORIZATION, auth.clone());
        }
        let path = req.uri().path().to_string();
        match self.tracing.child(path.clone(), SpanKind::Client, rpc_attributes(&path), &current) {
            Some(mut span) => {
                otel::inject(&span.context(), &mut HeaderInjector(req.headers_mut()));
                let call = inner.call(req);
                Box::pin(async move {
                    let result = call.await;
                    if result.is_err() {
                        span.set_error("transport error");
                    }
                    span.end();
                    result
                })
            }
            None => {
                if current.span().span_context().is_valid() {
                    otel::inject(&current, &mut HeaderInjector(req.headers_mut()));
                }
                Box::pin(inner.call(req))
            }
        }
    }
}

/// A traced channel to `url` (`http://host:port`), connected now, sending `token` as a
/// bearer token on every call when set.
pub async fn connect(url: &str, tracing: &Tracing, token: Option<&str>) -> Result<ClientTrace<Channel>, ConnectError> {
    let channel = Endpoint::from_shared(url.to_string())?.connect().await?;
    Ok(ClientTrace::new(channel, tracing.clone()).with_token(token)?)
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("the gRPC token cannot be sent as a header: {0}")]
    Token(#[from] http::header::InvalidHeaderValue),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_attributes_split_the_path() {
        let a = rpc_attributes("/proact.v1.Archive/QueryRange");
        assert_eq!(a[1].value.as_str(), "proact.v1.Archive");
        assert_eq!(a[2].value.as_str(), "QueryRange");
    }

    #[test]
    fn headers_carry_the_context_both_ways() {
        let mut h = HeaderMap::new();
        let mut c = std::collections::HashMap::new();
        c.insert(TRACEPARENT.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string());
        otel::inject(&otel::extract(&c), &mut HeaderInjector(&mut h));
        assert_eq!(h[TRACEPARENT], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let back = otel::extract(&HeaderExtractor(&h));
        assert_eq!(back.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
    }
}
