//! Parsing of HStream service URLs: `hstream://host1[:port][,host2[:port]…]`
//! (`hstreams://` for TLS).

use super::error::StreamError;

/// Port used when a host in the service URL has none.
pub const DEFAULT_PORT: u16 = 6570;

/// A parsed service URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    /// `true` for `hstreams://` (TLS).
    pub tls: bool,
    /// `host:port` of every seed node, in URL order.
    pub nodes: Vec<String>,
}

impl ServiceUrl {
    /// Parses `hstream://h1[:p1][,h2[:p2]…]` (or `hstreams://` for TLS).
    /// A URL without a scheme is read as `hstream://`.
    pub fn parse(url: &str) -> Result<Self, StreamError> {
        let bad = |reason: &str| StreamError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        let (tls, rest) = if let Some(r) = trimmed.strip_prefix("hstreams://") {
            (true, r)
        } else if let Some(r) = trimmed.strip_prefix("hstream://") {
            (false, r)
        } else if trimmed.contains("://") {
            return Err(bad("the scheme must be hstream:// or hstreams://"));
        } else {
            (false, trimmed)
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(bad("no host given"));
        }
        let mut nodes = Vec::new();
        for part in rest.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("empty host between commas"));
            }
            let (host, port) = split_host_port(part).map_err(|r| bad(&r))?;
            nodes.push(format!("{host}:{port}"));
        }
        Ok(Self { tls, nodes })
    }
}

fn split_host_port(s: &str) -> Result<(String, u16), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p, s)?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(format!("unexpected {after:?} after ']' in {s:?}")),
        };
        return Ok((format!("[{host}]"), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            if host.is_empty() {
                return Err(format!("missing host in {s:?}"));
            }
            Ok((host.to_string(), parse_port(port, s)?))
        }
        None => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {p:?} in {whole:?} (1-65535)")),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_default_port() {
        let u = ServiceUrl::parse("hstream://a:1,b,[::1]:7").unwrap();
        assert!(!u.tls);
        assert_eq!(u.nodes, vec!["a:1", "b:6570", "[::1]:7"]);
        assert!(ServiceUrl::parse("hstreams://x").unwrap().tls);
        assert_eq!(ServiceUrl::parse("h:9").unwrap().nodes, vec!["h:9"]);
    }

    #[test]
    fn rejects_bad_urls() {
        for u in [
            "http://a",
            "hstream://",
            "hstream://a:0",
            "hstream://a:x",
            "hstream://a,,b",
            "hstream://:5",
        ] {
            assert!(ServiceUrl::parse(u).is_err(), "{u}");
        }
    }
}
