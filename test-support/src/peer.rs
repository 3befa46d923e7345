//! A recording HTTP(S) peer: what the exporters under test talk to instead
//! of a real collector, Sentry, Alertmanager or webhook. It listens on
//! `127.0.0.1:0`, records every request (method, path, headers, body) and
//! answers each with a scripted [`Reply`] — so a test can make the peer
//! rate-limit (429 + `Retry-After`), fail (503), answer slowly, or accept.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a connection may stay silent before the peer drops it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (sent with its `Content-Length`).
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// A reply with `status`, no extra header, no body, no delay.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// `200 OK`.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// Adds a response header, e.g. `Reply::status(429).header("Retry-After", "1")`.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self.header("Content-Type", content_type)
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the peer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`…
    pub method: String,
    /// The request target, e.g. `/api/7/envelope/`.
    pub path: String,
    /// Header names in lower case, with their values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as sent (still compressed if it was).
    pub body: Vec<u8>,
    /// The status the peer answered with.
    pub status_sent: u16,
}

impl Request {
    /// `POST /path HTTP/1.1`.
    pub fn request_line(&self) -> String {
        format!("{} {} HTTP/1.1", self.method, self.path)
    }

    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, gunzipped when `Content-Encoding` says gzip.
    #[track_caller]
    pub fn decoded_body(&self) -> Vec<u8> {
        if self
            .header("content-encoding")
            .is_some_and(|v| v.contains("gzip"))
        {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("a gzip body");
            out
        } else {
            self.body.clone()
        }
    }

    /// The decoded body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.decoded_body()).into_owned()
    }

    /// The decoded body as JSON (panics with the body if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let body = self.decoded_body();
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    }
}

/// Chooses the reply to the n-th request (0-based, in arrival order).
type Script = Box<dyn Fn(usize) -> Reply + Send + Sync>;

/// How to start a [`RecordingPeer`].
pub struct PeerBuilder {
    script: Script,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl PeerBuilder {
    /// Answers the n-th request (0-based) with `script(n)`.
    pub fn reply(mut self, script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        self.script = Box::new(script);
        self
    }

    /// Answers with `replies` in turn, then `200 OK`.
    pub fn replies(self, replies: Vec<Reply>) -> Self {
        self.reply(move |n| replies.get(n).cloned().unwrap_or_else(Reply::ok))
    }

    /// Answers every request with `reply`.
    pub fn always(self, reply: Reply) -> Self {
        self.reply(move |_| reply.clone())
    }

    /// Speaks HTTPS with `config` instead of plain HTTP.
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    #[track_caller]
    pub fn start(self) -> RecordingPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            script: self.script,
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let https = self.tls.is_some();
        let s = shared.clone();
        let tls = self.tls;
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, tls) = (s.clone(), tls.clone());
                        std::thread::spawn(move || serve_connection(stream, &s, tls));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RecordingPeer {
            addr,
            https,
            shared,
            taken: Mutex::new(0),
            acceptor: Some(acceptor),
        }
    }
}

/// What the acceptor, the connections and the test share.
struct Shared {
    script: Script,
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    next: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<Request>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record once `done` holds for it, or at `until`, whichever is first.
    fn wait(
        &self,
        until: Instant,
        mut done: impl FnMut(&[Request]) -> bool,
    ) -> MutexGuard<'_, Vec<Request>> {
        let mut got = self.requests();
        while !done(&got) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            got = self
                .arrived
                .wait_timeout(got, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        got
    }
}

/// A local HTTP(S) server that records requests and answers from a script;
/// stops accepting when dropped.
pub struct RecordingPeer {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    /// How many requests [`RecordingPeer::next_request`] has handed out.
    taken: Mutex<usize>,
    acceptor: Option<JoinHandle<()>>,
}

impl RecordingPeer {
    /// A peer that answers every request with `200 OK`.
    #[track_caller]
    pub fn start() -> RecordingPeer {
        RecordingPeer::builder().start()
    }

    /// A builder (default: `200 OK` to everything, plain HTTP).
    pub fn builder() -> PeerBuilder {
        PeerBuilder {
            script: Box::new(|_| Reply::ok()),
            tls: None,
        }
    }

    /// Its address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>` (`https://` with TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests().clone()
    }

    /// The requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.requests().len()
    }

    /// Waits until at least `n` requests arrived (at most `max`) and returns
    /// them all; panics naming how many came.
    #[track_caller]
    pub fn wait_for_requests(&self, n: usize, max: Duration) -> Vec<Request> {
        let got = self.shared.wait(Instant::now() + max, |got| got.len() >= n);
        if got.len() < n {
            panic!(
                "timed out after {max:?} waiting for {n} requests at {}: {} came",
                self.addr,
                got.len()
            );
        }
        got.clone()
    }

    /// The oldest request not yet returned by this method, waiting up to
    /// `timeout` for one to arrive (a queue view of the same record).
    pub fn next_request(&self, timeout: Duration) -> Option<Request> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let got = self
            .shared
            .wait(Instant::now() + timeout, |got| got.len() > *taken);
        let next = got.get(*taken).cloned();
        *taken += usize::from(next.is_some());
        next
    }
}

impl Drop for RecordingPeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection (plain or TLS) until the client closes it, asks
/// for `Connection: close`, or the peer stops.
fn serve_connection(stream: TcpStream, shared: &Shared, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    match tls {
        None => serve(stream, shared),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            serve(rustls::StreamOwned::new(conn, stream), shared);
        }
    }
}

fn serve<S: Read + Write>(mut stream: S, shared: &Shared) {
    let mut buf = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let Some((mut request, close)) = read_request(&mut stream, &mut buf) else {
            return;
        };
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        let reply = (shared.script)(n);
        request.status_sent = reply.status;
        shared.requests().push(request);
        shared.arrived.notify_all();
        std::thread::sleep(reply.delay);
        if write_reply(&mut stream, &reply, close).is_err() || close {
            return;
        }
    }
}

/// Reads one request from `stream`; `buf` carries bytes read past it (the
/// next keep-alive request). Returns the request and whether the client
/// asked to close the connection.
fn read_request<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Option<(Request, bool)> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        fill(stream, buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let close = value("connection").is_some_and(|v| v.contains("close"));
    buf.drain(..head_end);
    let body = if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf)?
    } else {
        let len: usize = value("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            fill(stream, buf)?;
        }
        buf.drain(..len).collect()
    };
    let request = Request {
        method,
        path,
        headers,
        body,
        status_sent: 0,
    };
    Some((request, close))
}

/// Reads a chunked body (and its empty trailer) from `buf` + `stream`.
fn read_chunked<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            fill(stream, buf)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailer: header lines up to an empty line.
            loop {
                let end = loop {
                    if let Some(p) = find(buf, b"\r\n") {
                        break p;
                    }
                    fill(stream, buf)?;
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        while buf.len() < size + 2 {
            fill(stream, buf)?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Reads more bytes into `buf`; `None` at end of stream or on error.
fn fill<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn write_reply<S: Write>(stream: &mut S, reply: &Reply, close: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

/// The reason phrase of the statuses the tests script.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends raw `request` bytes and reads until the peer closes.
    fn send(peer: &RecordingPeer, request: &[u8]) -> String {
        let mut s = TcpStream::connect(peer.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn records_method_path_headers_and_body_and_answers_200() {
        let peer = RecordingPeer::start();
        let answer = send(
            &peer,
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Api-Key: secret\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let got = peer.wait_for_requests(1, Duration::from_secs(30));
        assert_eq!(got[0].request_line(), "POST /v1/traces HTTP/1.1");
        assert_eq!(got[0].header("x-api-key"), Some("secret"));
        assert_eq!(got[0].header("X-API-KEY"), Some("secret"));
        assert_eq!(got[0].body, b"hello");
        assert_eq!(got[0].status_sent, 200);
    }

    #[test]
    fn answers_from_the_script_in_order_then_200() {
        let peer = RecordingPeer::builder()
            .replies(vec![
                Reply::status(429).header("Retry-After", "7"),
                Reply::status(503),
            ])
            .start();
        let req = b"POST / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let answers: Vec<String> = (0..3).map(|_| send(&peer, req)).collect();
        assert!(answers[0].starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(answers[0].contains("Retry-After: 7\r\n"), "{}", answers[0]);
        assert!(answers[1].starts_with("HTTP/1.1 503 "));
        assert!(answers[2].starts_with("HTTP/1.1 200 "));
        let sent: Vec<u16> = peer.requests().iter().map(|r| r.status_sent).collect();
        assert_eq!(sent, [429, 503, 200]);
    }

    #[test]
    fn serves_several_requests_on_one_kept_alive_connection() {
        let peer = RecordingPeer::builder()
            .always(Reply::ok().body("application/json", "{}"))
            .start();
        let mut s = TcpStream::connect(peer.addr()).unwrap();
        s.write_all(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\n1POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        let got = peer.wait_for_requests(2, Duration::from_secs(30));
        assert_eq!(
            (got[0].path.as_str(), got[0].body.as_slice()),
            ("/a", &b"1"[..])
        );
        assert_eq!(
            (got[1].path.as_str(), got[1].body.as_slice()),
            ("/b", &b"abcde"[..])
        );
        assert_eq!(peer.requests_to("/b").len(), 1);
    }

    #[test]
    fn next_request_hands_out_each_request_once() {
        let peer = RecordingPeer::start();
        assert!(peer.next_request(Duration::ZERO).is_none());
        send(&peer, b"GET /one HTTP/1.1\r\nConnection: close\r\n\r\n");
        send(&peer, b"GET /two HTTP/1.1\r\nConnection: close\r\n\r\n");
        let wait = Duration::from_secs(30);
        assert_eq!(peer.next_request(wait).map(|r| r.path), Some("/one".into()));
        assert_eq!(peer.next_request(wait).map(|r| r.path), Some("/two".into()));
        assert!(peer.next_request(Duration::ZERO).is_none());
        assert_eq!(peer.count(), 2);
    }

    #[test]
    fn gzip_bodies_are_decoded_and_json_parsed() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"a":1}"#).unwrap();
        let body = gz.finish().unwrap();
        let r = Request {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("content-encoding".into(), "gzip".into())],
            body,
            status_sent: 200,
        };
        assert_eq!(r.json()["a"], 1);
        assert_eq!(r.text(), r#"{"a":1}"#);
    }

    #[test]
    #[should_panic(expected = "waiting for 1 requests")]
    fn waiting_for_requests_that_never_come_names_them() {
        RecordingPeer::start().wait_for_requests(1, Duration::ZERO);
    }

    #[test]
    fn url_names_the_scheme_and_port() {
        let peer = RecordingPeer::start();
        assert_eq!(
            peer.url("/x"),
            format!("http://127.0.0.1:{}/x", peer.port())
        );
    }
}
