//! Who may open the live feed, and what a browser may do with the page.
//!
//! - **Tickets**: a browser cannot set headers on a WebSocket, and a bearer token in the URL
//!   ends up in proxies' and servers' logs. The page asks for a ticket with its token
//!   (`POST /api/ws-ticket`), then opens `/ws/alerts?ticket=…`: a ticket is random, works
//!   once and only for [`TICKET_TTL`], on any replica (they are kept in Redis).
//! - **Origin**: a page of another site could open the feed with the user's network position
//!   (cross-site WebSocket hijacking). A browser always sends `Origin` on a WebSocket; it must
//!   be one of `PROACT_GATEWAY_ALLOWED_ORIGINS`, or, when none is configured, the gateway's
//!   own (the request's `Host`). Clients that are not browsers send none and are not checked.
//!   With allowed origins configured, `Host` must be one of theirs too (DNS rebinding).
//! - **Headers**: every response forbids framing, MIME sniffing and scripts from elsewhere.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

/// How long a ticket stays valid after it was issued.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

fn ticket_key(ticket: &str) -> String {
    format!("proact:gateway:ws-ticket:{ticket}")
}

/// A new single-use ticket, kept in Redis for [`TICKET_TTL`].
pub async fn issue_ticket(redis: &Client) -> Result<String, fred::error::Error> {
    let ticket = format!("{:032x}", rand::random::<u128>());
    let ttl = Expiration::EX(TICKET_TTL.as_secs() as i64);
    let _: () = redis.set(ticket_key(&ticket), 1, Some(ttl), Some(SetOptions::NX), false).await?;
    Ok(ticket)
}

/// Whether `ticket` was issued and has not expired; it cannot be used again. A ticket that
/// is not 32 hex digits is refused without asking Redis.
pub async fn redeem_ticket(redis: &Client, ticket: &str) -> bool {
    if ticket.len() != 32 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    matches!(redis.getdel::<Option<i64>, _>(ticket_key(ticket)).await, Ok(Some(_)))
}

/// The origins a browser page may open the feed from (`scheme://host[:port]`, lower case).
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    /// From `PROACT_GATEWAY_ALLOWED_ORIGINS`: a comma-separated list of `http(s)://host[:port]`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for o in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| format!("{o:?}: an origin starts with http:// or https://"))?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("{o:?}: an origin is scheme://host[:port], without a path"));
            }
            out.push(o.to_ascii_lowercase());
        }
        Ok(Self(out))
    }

    /// Why a WebSocket upgrade with these headers is refused, if it is.
    pub fn refuses(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
        if !self.0.is_empty() {
            let known = host.as_deref().is_some_and(|h| self.0.iter().any(|o| authority(o) == h));
            if !known {
                return Some(format!("Host {:?} is not one of the allowed origins", host.unwrap_or_default()));
            }
        }
        let origin = headers.get(header::ORIGIN)?;
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let allowed = if self.0.is_empty() {
            host.as_deref().is_some_and(|h| authority(&origin) == h)
        } else {
            self.0.contains(&origin)
        };
        (!allowed).then(|| format!("Origin {origin:?} may not open the feed"))
    }
}

fn authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, a)| a)
}

/// What every response of the gateway's HTTP side carries.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// Adds [`SECURITY_HEADERS`] to `response` (a middleware's last step).
pub fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(*name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn without_a_list_only_the_gateways_own_origin_opens_the_feed() {
        let o = Origins::default();
        assert!(o.refuses(&headers("gw.local:8080", Some("http://gw.local:8080"))).is_none());
        assert!(o.refuses(&headers("gw.local:8080", None)).is_none(), "not a browser");
        assert!(o.refuses(&headers("gw.local:8080", Some("https://evil.example"))).is_some());
        assert!(o.refuses(&headers("gw.local:8080", Some("null"))).is_some());
    }

    #[test]
    fn with_a_list_origin_and_host_must_be_in_it() {
        let o = Origins::parse("https://gmao.example.com, http://10.0.0.5:8080").unwrap();
        assert!(o.refuses(&headers("gmao.example.com", Some("https://gmao.example.com"))).is_none());
        assert!(o.refuses(&headers("10.0.0.5:8080", Some("http://10.0.0.5:8080"))).is_none());
        assert!(o.refuses(&headers("gmao.example.com", Some("https://evil.example"))).is_some());
        assert!(o.refuses(&headers("rebound.evil.example", None)).is_some(), "Host checked too");
        assert!(Origins::parse("gmao.example.com").is_err());
        assert!(Origins::parse("https://gmao.example.com/path").is_err());
    }
}
