//! Locating `host:port` inside `postgres://` URLs.

use std::ops::Range;

/// PostgreSQL's port when a URL names none.
const DEFAULT_PORT: u16 = 5432;

/// Byte range of `host[:port]` in `scheme://[user[:pass]@]host[:port][/db][?params]`.
pub(crate) fn host_span(url: &str) -> Option<Range<usize>> {
    let start = url.find("://")? + 3;
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (host_start < end).then_some(host_start..end)
}

/// `url` with its `host[:port]` replaced by `host_port`.
pub(crate) fn with_host_port(url: &str, host_port: &str) -> Option<String> {
    let host = host_span(url)?;
    Some(format!("{}{host_port}{}", &url[..host.start], &url[host.end..]))
}

/// `host:port` and the port of a URL, with the default port filled in when missing.
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let host = &url[host_span(url)?];
    match host.rsplit_once(':') {
        // A `:` inside `[ipv6]` is not a port separator.
        Some((_, port)) if !port.ends_with(']') => Some((host.to_string(), port.parse().ok()?)),
        _ => Some((format!("{host}:{DEFAULT_PORT}"), DEFAULT_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_host_and_port() {
        let url = "postgres://u:p@db.example:6000/app?sslmode=disable";
        assert_eq!(&url[host_span(url).unwrap()], "db.example:6000");
        assert_eq!(host_port(url), Some(("db.example:6000".into(), 6000)));
        assert_eq!(
            host_port("postgresql://localhost/app"),
            Some(("localhost:5432".into(), 5432))
        );
        assert_eq!(
            host_port("postgres://[::1]:7000"),
            Some(("[::1]:7000".into(), 7000))
        );
        assert_eq!(
            host_port("postgres://u@[::1]/db"),
            Some(("[::1]:5432".into(), 5432))
        );
        assert_eq!(host_port("host=localhost user=postgres"), None);
        assert_eq!(
            with_host_port(url, "127.0.0.1:7").as_deref(),
            Some("postgres://u:p@127.0.0.1:7/app?sslmode=disable")
        );
        assert_eq!(with_host_port("host=localhost", "127.0.0.1:7"), None);
        assert_eq!(host_port("postgres://u@/db"), None);
    }
}
