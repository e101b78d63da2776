//! The HTTP side: one [`Client`] per registry, auth on demand (401 -> Basic or a bearer token
//! from the challenge's realm), capped metadata reads, streamed blobs.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use ureq::http::{self, Response};
use ureq::Body;

use crate::auth::Credentials;
use crate::error::transport;
use crate::reference::DOCKER_HUB;
use crate::{Error, Result, METADATA_LIMIT};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Skip TLS verification, and fall back to plain HTTP when the registry does not speak
    /// TLS (`--tls-verify=false`, `insecure_registries`, loopback addresses).
    pub insecure: bool,
    /// Credentials to use; `None` means anonymous.
    pub credentials: Option<Credentials>,
}

/// A manifest (or index) as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The Content-Type the registry sent.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: String,
}

/// A connection to one registry. Shareable between threads (blobs download in parallel).
pub struct Client {
    agent: ureq::Agent,
    registry: String,
    base: String,
    credentials: Option<Credentials>,
    /// The Authorization header value that last worked.
    authorization: Mutex<Option<String>>,
}

const ERROR_BODY_LIMIT: u64 = 64 * 1024;

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn agent(insecure: bool, probe: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().disable_verification(insecure).build();
    let connect = if probe { Duration::from_secs(5) } else { Duration::from_secs(30) };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(connect))
        // A registry that stops sending for this long is treated as gone.
        .timeout_per_read(Some(Duration::from_secs(if probe { 5 } else { 60 })))
        .max_redirects(5)
        .user_agent(concat!("cove/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `Bearer realm="…",service="…",scope="a,b"` into scheme and parameters.
pub(crate) fn parse_challenge(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() {
            break;
        }
        chars.next()?; // '='
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    Some((scheme.to_ascii_lowercase(), params))
}

/// The token of a bearer token response: `token`, else `access_token` (RFC 6750 clients send
/// either). It must be printable ASCII: it is sent back in an `Authorization` header.
pub(crate) fn token_from_body(body: &[u8], registry: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|source| Error::Json { context: format!("{registry}: token response"), source })?;
    let token = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Invalid(format!("{registry}: token response without a token")))?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Invalid(format!(
            "{registry}: token response: the token has characters a bearer token cannot have"
        )));
    }
    Ok(token.to_owned())
}

/// The registry's own words in an error body (`{"errors":[{"code":…,"message":…}]}`), made one
/// line of at most [`MESSAGE_CHARS`] characters: runs of white space become one space, other
/// control characters are escaped (the message ends up in a one-line error on a terminal).
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let message = v.get("errors")?.get(0)?.get("message")?.as_str()?;
    let mut out = String::new();
    for (i, word) in message.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
    }
    if out.chars().count() > MESSAGE_CHARS {
        out = out.chars().take(MESSAGE_CHARS).chain(['…']).collect();
    }
    Some(out)
}

/// The longest registry message kept in an error.
const MESSAGE_CHARS: usize = 300;

fn read_capped(body: &mut Body, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    body.as_reader().take(limit + 1).read_to_end(&mut buf).map_err(crate::error::io_err(format!("{what}: read")))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge { what: what.to_owned(), limit });
    }
    Ok(buf)
}

fn content_length(r: &Response<Body>) -> Option<u64> {
    r.headers().get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

impl Client {
    /// A client for `registry` (`docker.io`, `host:port`). Insecure registries are probed once
    /// over HTTPS (unverified) and reached over plain HTTP when they do not speak TLS.
    pub fn new(registry: &str, settings: &Settings) -> Result<Client> {
        let host = if registry == DOCKER_HUB { "registry-1.docker.io" } else { registry };
        let mut base = format!("https://{host}");
        if settings.insecure {
            let probe = agent(true, true);
            match probe.get(format!("{base}/v2/")).call() {
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(registry, error = %e, "no TLS; using plain HTTP");
                    base = format!("http://{host}");
                }
            }
        }
        Ok(Client {
            agent: agent(settings.insecure, false),
            registry: registry.to_owned(),
            base,
            credentials: settings.credentials.clone(),
            authorization: Mutex::new(None),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn current_auth(&self) -> Option<String> {
        self.authorization.lock().map(|a| a.clone()).unwrap_or(None)
    }

    fn run(&self, req: http::request::Builder, body: impl ureq::AsSendBody) -> Result<Response<Body>> {
        let req = match self.current_auth() {
            Some(a) => req.header(http::header::AUTHORIZATION, a),
            None => req,
        };
        let req = req.body(body).map_err(|e| Error::Invalid(format!("{}: bad request: {e}", self.registry)))?;
        self.agent.run(req).map_err(|e| transport(&self.registry, e))
    }

    /// Sends a body-less request, authenticating and retrying once on 401.
    fn call(&self, method: http::Method, url: &str, accept: Option<&str>) -> Result<Response<Body>> {
        let build = || {
            let mut b = http::Request::builder().method(method.clone()).uri(url);
            if let Some(a) = accept {
                b = b.header(http::header::ACCEPT, a);
            }
            b
        };
        let resp = self.run(build(), ())?;
        if resp.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        self.authenticate(&resp)?;
        let resp = self.run(build(), ())?;
        if resp.status() == http::StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        Ok(resp)
    }

    fn unauthorized(&self) -> Error {
        match &self.credentials {
            Some(c) => Error::Unauthorized(format!(
                "{}: access denied for user {:?} (wrong credentials, or no access to this repository)",
                self.registry, c.username
            )),
            None => Error::Unauthorized(format!(
                "{}: authentication required (cove login {})",
                self.registry, self.registry
            )),
        }
    }

    /// Answers a 401: Basic with the credentials, or a bearer token from the realm.
    fn authenticate(&self, resp: &Response<Body>) -> Result<()> {
        let header = resp.headers().get(http::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or("");
        let (scheme, params) = parse_challenge(header)
            .ok_or_else(|| Error::Invalid(format!("{}: malformed WWW-Authenticate header", self.registry)))?;
        let value = match scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => c.basic_header(),
                None => return Err(self.unauthorized()),
            },
            "bearer" => format!("Bearer {}", self.token(&params)?),
            _ => return Err(Error::Unsupported(format!("{}: authentication scheme {scheme:?}", self.registry))),
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value);
        }
        Ok(())
    }

    fn token(&self, params: &[(String, String)]) -> Result<String> {
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let realm = get("realm")
            .ok_or_else(|| Error::Invalid(format!("{}: bearer challenge without a realm", self.registry)))?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(Error::Invalid(format!("{}: bearer realm {realm:?} is not an http(s) URL", self.registry)));
        }
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for k in ["service", "scope"] {
            if let Some(v) = get(k) {
                for part in if k == "scope" { v.split(' ').collect::<Vec<_>>() } else { vec![v] } {
                    url.push(sep);
                    url.push_str(&format!("{k}={}", enc(part)));
                    sep = '&';
                }
            }
        }
        tracing::debug!(registry = %self.registry, realm, "fetching a bearer token");
        let mut req = http::Request::builder().method(http::Method::GET).uri(&url);
        if let Some(c) = &self.credentials {
            req = req.header(http::header::AUTHORIZATION, c.basic_header());
        }
        let req = req.body(()).map_err(|e| Error::Invalid(format!("{}: bad token request: {e}", self.registry)))?;
        let mut resp = self.agent.run(req).map_err(|e| transport(realm, e))?;
        if resp.status() == http::StatusCode::UNAUTHORIZED || resp.status() == http::StatusCode::FORBIDDEN {
            return Err(self.unauthorized());
        }
        if !resp.status().is_success() {
            return Err(Error::Status {
                what: format!("{}: token from {realm}", self.registry),
                status: resp.status().as_u16(),
                message: None,
            });
        }
        let body = read_capped(resp.body_mut(), 1024 * 1024, "token response")?;
        token_from_body(&body, &self.registry)
    }

    /// Turns a non-success response into an error with the registry's own message.
    fn fail(&self, mut resp: Response<Body>, what: &str) -> Error {
        let status = resp.status().as_u16();
        let message = read_capped(resp.body_mut(), ERROR_BODY_LIMIT, what)
            .ok()
            .and_then(|b| error_message(&b))
            .or_else(|| resp.status().canonical_reason().map(|r| r.to_ascii_lowercase()));
        match status {
            401 | 403 => self.unauthorized(),
            _ => Error::Status { what: what.to_owned(), status, message },
        }
    }

    /// Checks that the registry answers (and, with credentials, that they are accepted).
    pub fn ping(&self) -> Result<()> {
        let resp = self.call(http::Method::GET, &self.url("/v2/"), None)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.fail(resp, &format!("{}: /v2/", self.registry)))
        }
    }

    /// Fetches a manifest or index (at most [`METADATA_LIMIT`] bytes). When `reference` is a
    /// digest, the bytes must hash to it.
    pub fn manifest(&self, repository: &str, reference: &str, accept: &[&str]) -> Result<Fetched> {
        let what = format!("{}/{repository}:{reference}", self.registry).replace(":sha256:", "@sha256:");
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let mut resp = self.call(http::Method::GET, &url, Some(&accept.join(", ")))?;
        if !resp.status().is_success() {
            return Err(match resp.status().as_u16() {
                404 => Error::Status {
                    what: format!("manifest for {what}"),
                    status: 404,
                    message: Some("not found".into()),
                },
                _ => self.fail(resp, &format!("manifest for {what}")),
            });
        }
        if content_length(&resp).is_some_and(|n| n > METADATA_LIMIT) {
            return Err(Error::TooLarge { what: format!("manifest for {what}"), limit: METADATA_LIMIT });
        }
        let media_type =
            resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = read_capped(resp.body_mut(), METADATA_LIMIT, &format!("manifest for {what}"))?;
        let digest = sha256(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Error::DigestMismatch {
                what: format!("manifest for {what}"),
                expected: reference.to_owned(),
                actual: digest,
            });
        }
        Ok(Fetched { bytes, media_type, digest })
    }

    /// Opens blob `digest` for streaming. The caller hashes what it reads; `size` (from the
    /// manifest) is checked against Content-Length up front.
    pub fn blob(&self, repository: &str, digest: &str, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
        let what = format!("blob {digest}");
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let resp = self.call(http::Method::GET, &url, None)?;
        if !resp.status().is_success() {
            return Err(self.fail(resp, &what));
        }
        if let (Some(want), Some(got)) = (size, content_length(&resp)) {
            if want != got {
                return Err(Error::Invalid(format!(
                    "{what}: the registry sends {got} bytes, the manifest says {want}"
                )));
            }
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// Reads a small blob (a config) completely, checking size limit and digest.
    pub fn blob_bytes(&self, repository: &str, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let what = format!("blob {digest}");
        let mut r = self.blob(repository, digest, None)?.take(limit + 1);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).map_err(crate::error::io_err(format!("{what}: read")))?;
        if buf.len() as u64 > limit {
            return Err(Error::TooLarge { what, limit });
        }
        let actual = sha256(&buf);
        if actual != digest {
            return Err(Error::DigestMismatch { what, expected: digest.to_owned(), actual });
        }
        Ok(buf)
    }

    /// True when the repository already has blob `digest`.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let resp = self.call(http::Method::HEAD, &url, None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail(resp, &format!("blob {digest}"))),
        }
    }

    /// Uploads a blob monolithically (POST for an upload URL, then one PUT with the body).
    pub fn upload_blob(&self, repository: &str, digest: &str, file: std::fs::File) -> Result<()> {
        let what = format!("upload of blob {digest}");
        let start = self.call(http::Method::POST, &self.url(&format!("/v2/{repository}/blobs/uploads/")), None)?;
        if start.status().as_u16() != 202 {
            return Err(self.fail(start, &what));
        }
        let location = start
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| Error::Invalid(format!("{what}: no Location in the registry's answer")))?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", enc(digest)));
        let req = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/octet-stream");
        let resp = self.run(req, file)?;
        if resp.status().as_u16() != 201 {
            return Err(self.fail(resp, &what));
        }
        Ok(())
    }

    /// Puts a manifest under `reference` (a tag or its digest); returns its digest.
    pub fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        let what = format!("manifest {}/{repository}:{reference}", self.registry);
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let req = || {
            http::Request::builder().method(http::Method::PUT).uri(&url).header(http::header::CONTENT_TYPE, media_type)
        };
        let mut resp = self.run(req(), bytes)?;
        if resp.status() == http::StatusCode::UNAUTHORIZED {
            self.authenticate(&resp)?;
            resp = self.run(req(), bytes)?;
        }
        if resp.status().as_u16() != 201 {
            return Err(self.fail(resp, &what));
        }
        Ok(sha256(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "reg.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into())
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
        assert_eq!(enc("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn error_bodies_give_one_line() {
        let msg = |b: &str| error_message(b.as_bytes());
        assert_eq!(
            msg(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#).as_deref(),
            Some("manifest unknown")
        );
        assert_eq!(
            msg(r#"{"errors":[{"message":" line one\n\tline two\r\n"}]}"#).as_deref(),
            Some("line one line two")
        );
        assert_eq!(msg(r#"{"errors":[{"message":"red \u001b[31m"}]}"#).as_deref(), Some("red \\u{1b}[31m"));
        let long = msg(&format!(r#"{{"errors":[{{"message":"{}"}}]}}"#, "x".repeat(5000))).unwrap();
        assert_eq!(long.chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(msg(r#"{"errors":[]}"#), None);
        assert_eq!(msg("<html>"), None);
    }

    #[test]
    fn token_responses() {
        let tok = |b: &str| token_from_body(b.as_bytes(), "reg").map_err(|e| e.to_string());
        assert_eq!(tok(r#"{"token":"a.b-c_d~e+f/g=","access_token":"x"}"#).as_deref(), Ok("a.b-c_d~e+f/g="));
        assert_eq!(tok(r#"{"access_token":"x","token_type":"Bearer"}"#).as_deref(), Ok("x"));
        assert_eq!(tok(r#"{"expires_in":300}"#), Err("reg: token response without a token".into()));
        for bad in [r#"{"token":"a\nb"}"#, r#"{"token":"a b"}"#, r#"{"token":"\u00e9"}"#] {
            assert!(tok(bad).unwrap_err().contains("characters a bearer token cannot have"), "{bad}");
        }
    }
}
