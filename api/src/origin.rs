//! Which browser pages may open the live stream.
//!
//! The same-origin policy does not cover websockets: any page a user visits could open
//! `/api/v1/stream` from the user's machine, and so reach an API that listens on localhost or
//! an intranet. Browsers send an `Origin` header with every websocket handshake, and no page can
//! forge it, so a request that carries one is accepted only when that origin is this server's
//! own (its host and port equal the `Host` header's) or is listed in `--api-allowed-origins`
//! (a dashboard served elsewhere, e.g. `https://grafana.example.com`). Requests without `Origin`
//! come from programs, not pages, and are accepted.

use std::sync::Arc;

use axum::http::header::{HOST, ORIGIN};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri};

use crate::error::ApiError;

/// An origin as compared: lower-case scheme and host, and the port with the scheme's default
/// filled in (`https://a.example` equals `https://a.example:443`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]` with scheme `http` or `https`, nothing after but one `/`.
    fn parse(text: &str) -> Result<Origin, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not an origin ({e})"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("`{text}` is not an origin: no scheme (http or https)"))?;
        let default = default_port(&scheme)
            .ok_or_else(|| format!("`{text}` is not an origin: the scheme is not http or https"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{text}` is not an origin: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{text}` is not an origin: it has a user name"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "`{text}` is not an origin: an origin has no path or query"
            ));
        }
        Ok(Origin {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default),
            scheme,
        })
    }

    /// Whether the request's `Host` names this origin's host and port.
    fn is_host(&self, host: &Authority) -> bool {
        host.host().eq_ignore_ascii_case(&self.host)
            && host.port_u16().or_else(|| default_port(&self.scheme)) == Some(self.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The origins allowed besides the request's own.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    origins: Arc<[Origin]>,
}

impl AllowList {
    /// Exact origins (`https://grafana.example.com`, `http://localhost:3000`); empty entries
    /// are skipped. The error names the first entry that is not an origin.
    pub fn parse<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let origins = list
            .into_iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| !s.is_empty())
            .map(|s| Origin::parse(&s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origins: origins.into(),
        })
    }

    /// Accepts a request without `Origin`, or whose origin is its own or listed; a 403 naming
    /// the origin otherwise.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let refused = || {
            ApiError::Forbidden(format!(
                "origin `{text}` may not open the stream: only pages of this server's own \
                 origin or of one in --api-allowed-origins may"
            ))
        };
        let origin = Origin::parse(&text).map_err(|_| refused())?;
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok());
        if host.is_some_and(|h| origin.is_host(&h)) || self.origins.contains(&origin) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, host.parse().expect("host"));
        if let Some(o) = origin {
            h.insert(ORIGIN, o.parse().expect("origin"));
        }
        h
    }

    fn allowed(list: &AllowList, origin: Option<&str>, host: &str) -> bool {
        list.check(&headers(origin, host)).is_ok()
    }

    #[test]
    fn same_origin_listed_or_none_only() {
        let none = AllowList::default();
        let cases = [
            (None, "api.example:8080", true),
            (Some("http://api.example:8080"), "api.example:8080", true),
            (Some("HTTP://API.example:8080"), "api.example:8080", true),
            (Some("https://api.example"), "api.example", true),
            (Some("https://api.example:443"), "api.example", true),
            (Some("http://api.example"), "api.example:80", true),
            (Some("http://[::1]:8080"), "[::1]:8080", true),
            (Some("http://api.example:8081"), "api.example:8080", false),
            (Some("https://api.example"), "api.example:8080", false),
            (Some("http://evil.example:8080"), "api.example:8080", false),
            (Some("null"), "api.example:8080", false),
            (
                Some("http://api.example:8080/page"),
                "api.example:8080",
                false,
            ),
        ];
        for (origin, host, want) in cases {
            assert_eq!(allowed(&none, origin, host), want, "{origin:?} on {host}");
        }
        let list = AllowList::parse(["https://grafana.example", " http://localhost:3000/ ", ""])
            .expect("list");
        assert!(allowed(&list, Some("https://grafana.example"), "api:8080"));
        assert!(allowed(
            &list,
            Some("https://grafana.example:443"),
            "api:8080"
        ));
        assert!(allowed(&list, Some("http://localhost:3000"), "api:8080"));
        assert!(!allowed(&list, Some("http://grafana.example"), "api:8080"));
        assert!(!allowed(&list, Some("http://localhost:3001"), "api:8080"));
    }

    #[test]
    fn refusals_name_the_origin_and_bad_entries_are_named() {
        let err = AllowList::default()
            .check(&headers(Some("http://evil.example"), "api:8080"))
            .expect_err("foreign origin");
        match err {
            ApiError::Forbidden(m) => {
                assert!(m.starts_with("origin `http://evil.example` "), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            AllowList::parse(["https://ok.example", "grafana.example"]).expect_err("no scheme"),
            "`grafana.example` is not an origin: no scheme (http or https)"
        );
        assert_eq!(
            AllowList::parse(["https://a.example/dash"]).expect_err("path"),
            "`https://a.example/dash` is not an origin: an origin has no path or query"
        );
        assert_eq!(
            AllowList::parse(["ftp://a.example:21"]).expect_err("scheme"),
            "`ftp://a.example:21` is not an origin: the scheme is not http or https"
        );
    }
}
