//! A small blocking client for a Needle node's HTTP JSON API (`needle serve`): one HTTP/1.1
//! request per connection, JSON in and out. Used by `needle cluster`, `needle demo --cluster`
//! and the tests; enough for scripts and tools, not a general HTTP client (HTTPS with a given
//! CA, no redirects, IP addresses only).
//!
//! ```no_run
//! use needle_cli::client::Client;
//! use serde_json::json;
//!
//! let node = Client::new("127.0.0.1:8001".parse().unwrap());
//! let status = node.get("/v1/status")?;
//! println!("{} is {}", status.body["id"], status.body["role"]);
//! let r = node.post("/v1/collections/docs/records", &json!({"id": "a", "vector": [1.0, 0.0]}))?;
//! assert!(r.is_success() || r.error_code() == Some("not_leader"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use serde_json::Value;

/// A node's HTTP API at one address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    token: Option<String>,
    timeout: Duration,
    tls: Option<Arc<ClientConfig>>,
}

/// An HTTP response: the status code and the JSON body (`Null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error.code` of an error body (`"not_leader"`, `"dimension_mismatch"`, …).
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// For a `not_leader` error: the leader's HTTP address, when the node knows it.
    pub fn leader_http(&self) -> Option<SocketAddr> {
        self.body["error"]["leader_http"]
            .as_str()
            .and_then(|s| s.parse().ok())
    }
}

impl Client {
    /// A client for the node at `addr`, with a 30 s timeout per request.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            token: None,
            timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Speaks HTTPS, trusting the CA of `tls` (see [`tls_client_config`]); the server's
    /// certificate must name the node's IP address.
    pub fn with_tls(mut self, tls: Option<Arc<ClientConfig>>) -> Client {
        self.tls = tls;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The connect, read and write timeout of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> std::io::Result<Response> {
        self.request("POST", path, Some(body.to_string().as_bytes()))
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> std::io::Result<Response> {
        self.request("PATCH", path, Some(body.to_string().as_bytes()))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> std::io::Result<Response> {
        self.request("DELETE", path, None)
    }

    /// Any method, with raw body bytes (sent as `application/json`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        self.request_with_headers(method, path, body, &[])
    }

    /// `GET path`, the body as bytes with the headers (for `GET /v1/snapshot`).
    pub fn get_raw(&self, path: &str) -> std::io::Result<RawResponse> {
        parse_raw(&self.exchange_raw("GET", path, None, &[])?)
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`: a retry with the same key is
    /// applied at most once and answered with the first outcome.
    pub fn post_with_key(&self, path: &str, body: &Value, key: &str) -> std::io::Result<Response> {
        self.request_with_headers(
            "POST",
            path,
            Some(body.to_string().as_bytes()),
            &[("Idempotency-Key", key)],
        )
    }

    /// Any method, with raw body bytes and extra headers (names and values must be valid
    /// header text: no line breaks).
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        parse_response(&self.exchange_raw(method, path, body, headers)?)
    }

    fn exchange_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Vec<u8>> {
        if headers
            .iter()
            .any(|(n, v)| n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']))
        {
            return Err(bad("a header name or value holds a line break"));
        }
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.addr
        );
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let raw = match &self.tls {
            None => exchange(stream, &request)?,
            Some(config) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                let conn = ClientConnection::new(config.clone(), name)
                    .map_err(|e| bad(format!("TLS: {e}")))?;
                exchange(StreamOwned::new(conn, stream), &request)?
            }
        };
        Ok(raw)
    }
}

/// Writes the request and reads the whole response (the server closes the connection).
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS server that closes without close_notify: the response is whole all the same
        // when it parses (its length is checked by the parser's framing).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// A TLS client configuration that trusts only the CA certificates in `ca_pem`.
pub fn tls_client_config(ca_pem: &[u8]) -> std::io::Result<Arc<ClientConfig>> {
    let roots = needle_transport_tcp::root_store(ca_pem).map_err(|e| bad(e.to_string()))?;
    let config = ClientConfig::builder_with_provider(needle_transport_tcp::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn bad(reason: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason.into())
}

/// An HTTP response with its headers and its body as bytes (for `GET /v1/snapshot`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_raw(raw: &[u8]) -> std::io::Result<RawResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the response has no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .filter(|&len| body.len() != len)
    {
        return Err(bad(format!(
            "the body is {} bytes, the header said {len}",
            body.len()
        )));
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the response has no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            // Not JSON (a proxy's page, say): keep the text so the caller can show it.
            Value::String(String::from_utf8_lossy(&body).into_owned())
        })
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk size line is cut off"))?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("chunk size is not hexadecimal"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(|| bad("a chunk is cut off"))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 421 Misdirected Request\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n";
        let r = parse_response(plain).unwrap();
        assert_eq!(r.status, 421);
        assert_eq!(r.body["a"], 1);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"b\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        let r = parse_response(chunked).unwrap();
        assert_eq!(r.body["b"], 2);
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_response(empty).unwrap().body, Value::Null);
    }
}
