//! A minimal HTTP/1.1 GET over `std::net::TcpStream` for local endpoints
//! (vLLM's `/health` and `/metrics`): plain HTTP only, bounded by a timeout
//! and a response size, `Content-Length`, chunked or read-to-close bodies.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Responses larger than this are refused (metrics pages are a few hundred KiB).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not an http:// URL")]
    BadUrl(String),
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("cannot connect to {authority}: {detail}")]
    Connect { authority: String, detail: String },
    /// Nothing listens there: every address refused the connection.
    #[error("cannot connect to {authority}: nothing listens there (connection refused)")]
    Refused { authority: String },
    #[error("{url}: {detail}")]
    Io { url: String, detail: String },
    #[error("{url}: no answer within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("{url}: malformed response: {detail}")]
    Malformed { url: String, detail: String },
}

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// The parts of an `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None => 80,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> Self {
        Self {
            path: path.to_string(),
            ..self.clone()
        }
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn to_url(&self) -> String {
        format!("http://{}{}", self.authority(), self.path)
    }
}

/// GET `url`, the whole exchange bounded by `timeout`.
pub fn get(url: &HttpUrl, timeout: Duration) -> Result<HttpResponse, HttpError> {
    send("GET", url, None, timeout)
}

/// POST to `url` with an empty body (vLLM's `/pause`, `/resume`), the whole
/// exchange bounded by `timeout`.
pub fn post(url: &HttpUrl, timeout: Duration) -> Result<HttpResponse, HttpError> {
    send("POST", url, None, timeout)
}

/// `method` to `url` with an optional body and its content type, the
/// whole exchange bounded by `timeout`.
pub fn send(
    method: &str,
    url: &HttpUrl,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let deadline = crate::Deadline::after(timeout);
    let text_url = url.to_url();
    let io = |e: std::io::Error| -> HttpError {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            HttpError::Timeout {
                url: text_url.clone(),
                ms: timeout.as_millis(),
            }
        } else {
            HttpError::Io {
                url: text_url.clone(),
                detail: e.to_string(),
            }
        }
    };
    let mut stream = connect(url, timeout)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let content = match body {
        Some((kind, bytes)) => format!(
            "Content-Type: {kind}\r\nContent-Length: {}\r\n",
            bytes.len()
        ),
        None if method == "GET" => String::new(),
        None => "Content-Length: 0\r\n".into(),
    };
    let request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mode-controller\r\nAccept: application/json, */*\r\n{content}Connection: close\r\n\r\n",
        url.path,
        url.authority()
    );
    let mut request = request.into_bytes();
    if let Some((_, bytes)) = body {
        request.extend_from_slice(bytes);
    }
    stream.write_all(&request).map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.left();
        if left.is_zero() {
            return Err(HttpError::Timeout {
                url: text_url.clone(),
                ms: timeout.as_millis(),
            });
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE_BYTES {
            return Err(malformed(&text_url, "response larger than 8 MiB"));
        }
        if response_complete(&raw) {
            break;
        }
    }
    parse_response(&text_url, &raw)
}

fn connect(url: &HttpUrl, timeout: Duration) -> Result<TcpStream, HttpError> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| HttpError::Resolve {
            host: url.host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    let mut last = String::from("no address");
    let mut all_refused = !addrs.is_empty();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => {
                all_refused &= e.kind() == std::io::ErrorKind::ConnectionRefused;
                last = e.to_string();
            }
        }
    }
    if all_refused {
        return Err(HttpError::Refused {
            authority: url.authority(),
        });
    }
    Err(HttpError::Connect {
        authority: url.authority(),
        detail: last,
    })
}

fn malformed(url: &str, detail: impl Into<String>) -> HttpError {
    HttpError::Malformed {
        url: url.to_string(),
        detail: detail.into(),
    }
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&raw[..at], &raw[at + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether the body is complete by `Content-Length` or the chunked
/// terminator, so we need not wait for the server to close.
fn response_complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    let head = String::from_utf8_lossy(head);
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).is_some();
    }
    false
}

/// Decode a chunked body; `None` until the last chunk has arrived.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn parse_response(url: &str, raw: &[u8]) -> Result<HttpResponse, HttpError> {
    let (head, body) = split_head(raw).ok_or_else(|| malformed(url, "no end of headers"))?;
    let head = String::from_utf8_lossy(head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(url, format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(url, format!("status line {status_line:?}")))?;
    let body = if header(&head, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body).ok_or_else(|| malformed(url, "truncated chunked body"))?
    } else if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(malformed(
                url,
                format!("body shorter than Content-Length {len}"),
            ));
        }
        body[..len].to_vec()
    } else {
        body.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_port_and_path() {
        let u = HttpUrl::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8000, "/")
        );
        let u = HttpUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9, "/x"));
        assert_eq!(u.to_url(), "http://[::1]:9/x");
        assert!(HttpUrl::parse("https://x").is_err());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nvllm\r\n3;x=y\r\n:ok\r\n0\r\n\r\n";
        assert!(response_complete(raw));
        let r = parse_response("u", raw).unwrap();
        assert_eq!(r.body, "vllm:ok");
    }

    #[test]
    fn content_length_bounds_the_body() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nnoEXTRA";
        let r = parse_response("u", raw).unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "no"));
    }
}
