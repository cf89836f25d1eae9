//! What `PROACT_REDIS_URL` names: one Redis (`redis://`, `rediss://` for TLS) or a Redis
//! Cluster (`redis-cluster://host:port[,host:port…]`, `rediss-cluster://` for TLS). Read once,
//! here, by the start-up check of every service and by [`crate::redis::connect`], so both
//! accept exactly the same values.
//!
//! A cluster URL lists one or more nodes, any of them: the client discovers the others (and
//! follows the topology after a failover). Several are worth listing so that a service can
//! start while one of them is down. Credentials and `sslrootcert=PATH` are written once, for
//! every node: `rediss-cluster://user:pass@a:6379,b:6379?sslrootcert=/etc/ca.pem`.

use std::path::PathBuf;

use fred::types::config::{Config as FredConfig, ServerConfig};

use crate::tls::{take_root_cert, ROOT_CERT_PARAM};

/// A parsed Redis URL, TLS not set up yet (see [`crate::redis::connect`]).
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub config: FredConfig,
    /// `rediss://` or `rediss-cluster://`.
    pub tls: bool,
    /// The CA file named by `sslrootcert`, if any.
    pub root_cert: Option<PathBuf>,
    /// A cluster URL.
    pub cluster: bool,
}

/// Why a Redis URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("scheme must be one of redis, rediss, redis-cluster, rediss-cluster")]
    Scheme,
    #[error("not a Redis URL: {0}")]
    Syntax(String),
    #[error("cluster node {0:?} is not host:port")]
    Node(String),
    #[error("a cluster URL lists at least one host:port")]
    NoNode,
    #[error("a Redis Cluster has no database number (path {0:?}): remove it")]
    Database(String),
    #[error("unknown query parameter {0:?} (only {ROOT_CERT_PARAM} is accepted)")]
    Parameter(String),
    #[error("{ROOT_CERT_PARAM} is set but the URL does not use TLS (rediss:// or rediss-cluster://)")]
    RootCertWithoutTls,
}

/// Reads `url` (see the module's documentation for the forms).
pub fn parse(url: &str) -> Result<RedisTarget, RedisUrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(RedisUrlError::Scheme)?;
    let (tls, cluster) = match scheme {
        "redis" => (false, false),
        "rediss" => (true, false),
        "redis-cluster" => (false, true),
        "rediss-cluster" => (true, true),
        _ => return Err(RedisUrlError::Scheme),
    };
    let target = if cluster { parse_cluster(rest, tls)? } else { parse_single(url, tls)? };
    if target.root_cert.is_some() && !tls {
        return Err(RedisUrlError::RootCertWithoutTls);
    }
    Ok(target)
}

fn parse_single(url: &str, tls: bool) -> Result<RedisTarget, RedisUrlError> {
    let (url, root_cert) = take_root_cert(url);
    let config = FredConfig::from_url(&url).map_err(|e| RedisUrlError::Syntax(e.details().to_string()))?;
    Ok(RedisTarget { config, tls, root_cert, cluster: false })
}

/// `[user[:pass]@]host:port[,host:port…][/][?sslrootcert=PATH]`, after the scheme.
fn parse_cluster(rest: &str, tls: bool) -> Result<RedisTarget, RedisUrlError> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    if !path.is_empty() {
        return Err(RedisUrlError::Database(path.to_string()));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        let bad = || RedisUrlError::Node(node.to_string());
        let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        nodes.push((host.to_string(), port));
    }
    if nodes.is_empty() {
        return Err(RedisUrlError::NoNode);
    }
    let mut root_cert = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == ROOT_CERT_PARAM {
            root_cert = Some(PathBuf::from(v.as_ref()));
        } else {
            return Err(RedisUrlError::Parameter(k.into_owned()));
        }
    }
    // The credentials, percent-decoded as for one Redis: fred reads them from a URL with the
    // first node; the node list is set afterwards.
    let first = hosts.split(',').next().unwrap_or_default();
    let credentials = match userinfo {
        Some(u) => format!("redis://{u}@{first}"),
        None => format!("redis://{first}"),
    };
    let mut config =
        FredConfig::from_url_centralized(&credentials).map_err(|e| RedisUrlError::Syntax(e.details().to_string()))?;
    config.database = None;
    config.server = ServerConfig::new_clustered(nodes);
    Ok(RedisTarget { config, tls, root_cert, cluster: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(t: &RedisTarget) -> Vec<(String, u16)> {
        t.config.server.hosts().into_iter().map(|s| (s.host.to_string(), s.port)).collect()
    }

    #[test]
    fn a_cluster_url_lists_its_nodes() {
        let t = parse("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,redis-2.redis:6379").unwrap();
        assert!(t.cluster && !t.tls && t.config.server.is_clustered());
        assert_eq!(
            hosts(&t),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001), ("redis-2.redis".into(), 6379)]
        );
        assert_eq!(hosts(&parse("redis-cluster://[::1]:7000").unwrap()), vec![("::1".into(), 7000)]);
    }

    #[test]
    fn credentials_and_the_ca_apply_to_every_node() {
        let t = parse("rediss-cluster://proact:p%40ss@a:1,b:2/?sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert!(t.tls && t.cluster);
        assert_eq!(t.config.username.as_deref(), Some("proact"));
        assert_eq!(t.config.password.as_deref(), Some("p@ss"));
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(hosts(&t).len(), 2);
    }

    #[test]
    fn one_redis_is_read_as_before() {
        let t = parse("redis://127.0.0.1:6379/2").unwrap();
        assert!(!t.cluster && !t.tls && !t.config.server.is_clustered());
        assert_eq!(t.config.database, Some(2));
        let t = parse("rediss://:pw@redis:6380?sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert!(t.tls);
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn bad_cluster_urls_say_what_is_wrong() {
        let e = |u: &str| parse(u).unwrap_err().to_string();
        assert!(e("http://a:1").contains("scheme"));
        assert!(e("redis-cluster://a:1,b").contains("\"b\" is not host:port"));
        assert!(e("redis-cluster://a:1,,b:2").contains("\"\" is not host:port"));
        assert!(e("redis-cluster://a:x").contains("not host:port"));
        assert!(e("redis-cluster://a:1/0").contains("no database number"));
        assert!(e("redis-cluster://a:1?node=b:2").contains("unknown query parameter \"node\""));
        assert!(e("redis-cluster://a:1?sslrootcert=/ca.pem").contains("does not use TLS"));
        assert!(e("redis://a:1?sslrootcert=/ca.pem").contains("does not use TLS"));
    }
}
