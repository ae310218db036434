//! hookrelay's own HTTP/1.1 client for destinations: one request per exchange on
//! kept-alive connections, pooled per (scheme, host, port), rustls with the webpki
//! roots for `https`. A delivery is one `POST` and one short answer; a general
//! client's machinery around that (redirect and retry layers, URL and URI
//! conversions both ways, a pool checkout with its own timer) cost more CPU than
//! the exchange itself in a drain.
//!
//! What it keeps from the general client: the destination's timeout bounds the
//! whole exchange (connect, TLS, request, answer); at most [`MAX_RESPONSE_BYTES`]
//! of an answer is read (the connection is closed when more comes); redirects are
//! never followed; a transport failure is a [`SendError`] in the same words as
//! before, never quoting the URL. A pooled connection the server closed meanwhile
//! is dropped before use; if a request could not be written to a pooled
//! connection at all, it is sent again on another one (nothing of it reached the
//! server). A reused connection that the server closes after the request was
//! written, before any answer, is the race of a server closing an idle kept-alive
//! connection just as it is reused (it never read the request): the request goes
//! out once more, at once, on a new connection, rather than waiting for the first
//! retry of the schedule (which would send it again all the same, with the same
//! delivery id). Any other break after the request was written is a transient
//! failure: the server may have acted on it, and the worker's retry (with the same
//! delivery id) decides.
//!
//! When a proxy is configured in the environment (`HTTP_PROXY`, `HTTPS_PROXY`,
//! `ALL_PROXY`, either case), [`enabled`] is false and the destinations send
//! through the general client, which honours them (and `NO_PROXY`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONNECTION, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{excerpt, SendError, MAX_RESPONSE_BYTES};

/// An answer: status, headers, at most [`MAX_RESPONSE_BYTES`] of the body as text.
pub(crate) type Answer = (u16, HeaderMap, String);

/// How long an idle connection is kept (servers close theirs after 5 s to a few
/// minutes; a connection they closed is noticed and dropped before use anyway).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per (scheme, host, port): more than the delivery
/// workers that can send to one destination at once.
const MAX_IDLE_PER_HOST: usize = 128;

/// Whether destinations send with this client: not when a proxy is set in the
/// environment (the general client honours it).
pub(crate) fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        !["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"].iter().any(|k| {
            [k.to_string(), k.to_lowercase()]
                .iter()
                .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
        })
    })
}

/// Where a request goes, parsed once: the pool's key, the address to connect to,
/// the `Host` header and the request target (path and query).
#[derive(Clone)]
pub(crate) struct Target {
    https: bool,
    /// `scheme://host:port`: the pool's key.
    key: String,
    /// The host to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the port only when it is not the scheme's.
    authority: HeaderValue,
    path: hyper::Uri,
    /// `Authorization: Basic` from the URL's `user:password@`, as the general
    /// client sends it (marked sensitive).
    auth: Option<HeaderValue>,
}

/// Only the scheme, host and port: a URL's path and query are often its secret.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("key", &self.key).finish()
    }
}

impl Target {
    /// The target of an http(s) URL; anything else is a permanent error that
    /// does not quote it (URLs are credentials).
    pub(crate) fn new(url: &url::Url) -> Result<Target, SendError> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(SendError::permanent(
                    "could not build the request: the URL is not http:// or https://",
                ))
            }
        };
        let bad = || SendError::permanent("could not build the request: the URL has no valid host");
        let host = match url.host().ok_or_else(bad)? {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        let shown = url.host_str().ok_or_else(bad)?;
        let port = url.port_or_known_default().ok_or_else(bad)?;
        let authority = match url.port() {
            Some(p) => HeaderValue::try_from(format!("{shown}:{p}")),
            None => HeaderValue::try_from(shown),
        }
        .map_err(|_| bad())?;
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let path = hyper::Uri::try_from(path).map_err(|_| {
            SendError::permanent("could not build the request: the URL's path is not valid")
        })?;
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|d| d.into_owned())
            };
            let user = decode(url.username()).map_err(|_| bad())?;
            let password = decode(url.password().unwrap_or("")).map_err(|_| bad())?;
            let mut v =
                HeaderValue::try_from(super::basic_auth(&user, &password)).map_err(|_| bad())?;
            v.set_sensitive(true);
            Some(v)
        };
        Ok(Target {
            auth,
            https,
            key: format!("{}://{shown}:{port}", url.scheme()),
            host,
            port,
            authority,
            path,
        })
    }
}

/// Sends one request and reads its answer, all within `timeout`. `headers` are
/// sent as given, plus `Host`.
pub(crate) async fn exchange(
    target: &Target,
    method: hyper::Method,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, SendError> {
    headers.insert(HOST, target.authority.clone());
    if let Some(auth) = &target.auth {
        if !headers.contains_key(AUTHORIZATION) {
            headers.insert(AUTHORIZATION, auth.clone());
        }
    }
    let mut req = hyper::Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = target.path.clone();
    *req.headers_mut() = headers;
    match tokio::time::timeout(timeout, pool().exchange(target, req)).await {
        Ok(answer) => answer,
        Err(_) => Err(SendError::transient("destination timed out")),
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The kept-alive connections of the process, shared by every destination.
struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    tls: OnceLock<tokio_rustls::TlsConnector>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        idle: Mutex::new(HashMap::new()),
        tls: OnceLock::new(),
    })
}

impl Pool {
    async fn exchange(
        &self,
        target: &Target,
        mut req: hyper::Request<Full<Bytes>>,
    ) -> Result<Answer, SendError> {
        loop {
            let (mut sender, pooled) = match self.take(&target.key).await {
                Some(s) => (s, true),
                None => (self.connect(target).await?, false),
            };
            // Kept for the one case where a request that was written is sent
            // again (see the module's notes): the body is shared, not copied.
            let again = pooled.then(|| copy(&req));
            match sender.try_send_request(req).await {
                Ok(resp) => return self.answer(target, sender, resp).await,
                Err(mut e) => match (e.take_message(), again) {
                    // Nothing of it was written: the pooled connection had closed
                    // meanwhile. Send it on another (or a new) one.
                    (Some(r), _) if pooled => req = r,
                    // Written, and the reused connection closed with no answer.
                    (None, Some(r)) if e.error().is_incomplete_message() => {
                        log::debug!(
                            "destination closed a kept-alive connection as it was reused; \
                             sending on a new one"
                        );
                        let mut sender = self.connect(target).await?;
                        return match sender.try_send_request(r).await {
                            Ok(resp) => self.answer(target, sender, resp).await,
                            Err(e) => Err(broken(&e.into_error())),
                        };
                    }
                    _ => return Err(broken(&e.into_error())),
                },
            }
        }
    }

    /// A pooled connection to `key` that is open and ready, if there is one.
    async fn take(&self, key: &str) -> Option<Sender> {
        loop {
            let idle = {
                let mut all = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                all.get_mut(key)?.pop()?
            };
            let mut sender = idle.sender;
            if idle.since.elapsed() > IDLE_TIMEOUT || sender.is_closed() {
                continue;
            }
            // Resolves at once for an idle connection; an error if it closed.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put(&self, key: &str, sender: Sender) {
        let mut all = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = match all.get_mut(key) {
            Some(l) => l,
            None => all.entry(key.to_string()).or_default(),
        };
        // One clock read for the whole list: a drain puts a connection back
        // after every send.
        let now = Instant::now();
        list.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) <= IDLE_TIMEOUT);
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle { sender, since: now });
        }
    }

    async fn connect(&self, target: &Target) -> Result<Sender, SendError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| unreachable(&e))?;
        // As the general client did: a request goes out in one segment, now.
        let _ = tcp.set_nodelay(true);
        if target.https {
            let name =
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|_| {
                    SendError::permanent("could not build the request: the URL has no valid host")
                })?;
            let tls = self
                .tls
                .get_or_init(tls_connector)
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
            handshake(TokioIo::new(tls)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }

    /// Reads at most [`MAX_RESPONSE_BYTES`] of the answer; the connection goes
    /// back to the pool only when the answer was read to its end and the server
    /// keeps it open.
    async fn answer(
        &self,
        target: &Target,
        sender: Sender,
        resp: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Answer, SendError> {
        let (parts, mut body) = resp.into_parts();
        let mut bytes = Vec::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| broken(&e))?;
            if let Ok(chunk) = frame.into_data() {
                let room = MAX_RESPONSE_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if bytes.len() >= MAX_RESPONSE_BYTES {
                    // The rest is never read: dropping the connection closes it.
                    whole = false;
                    break;
                }
            }
        }
        let closing = parts
            .headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if whole && !closing && parts.version == hyper::Version::HTTP_11 {
            self.put(&target.key, sender);
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok((parts.status.as_u16(), parts.headers, text))
    }
}

/// The same request again: method, target, headers and the (shared) body.
fn copy(req: &hyper::Request<Full<Bytes>>) -> hyper::Request<Full<Bytes>> {
    let mut r = hyper::Request::new(req.body().clone());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.headers_mut() = req.headers().clone();
    r
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Sender, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(|e| broken(&e))?;
    // The connection's own task reads and writes; it ends when the connection
    // closes or its last sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// rustls with the webpki roots (the general client's), HTTP/1.1 only.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder());
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// No connection (refused, no such host, TLS refused): worth retrying.
fn unreachable(e: &std::io::Error) -> SendError {
    SendError::transient(format!(
        "destination could not connect: {}",
        excerpt(&innermost(e))
    ))
}

/// The connection broke while the request or the answer was on the wire (or the
/// answer was not HTTP): worth retrying.
fn broken(e: &hyper::Error) -> SendError {
    SendError::transient(format!(
        "destination connection failed: {}",
        excerpt(&innermost(e))
    ))
}

/// The deepest cause's words (hyper's and io's errors never name the URL).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    let words = last.to_string();
    if words.is_empty() {
        e.to_string()
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What a test server does with each request on a connection: the bytes it
    /// answers with, and whether it closes the connection afterwards.
    type Script = fn(usize) -> (Vec<u8>, bool);

    /// A local HTTP/1.1 server answering by `script(n)` for the n-th request
    /// (over all connections); returns its URL and its count of connections.
    async fn server(script: Script) -> (url::Url, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/in?x=1", l.local_addr().unwrap())).unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // One request: its head, then content-length bytes.
                        let mut chunk = [0u8; 4096];
                        let end = loop {
                            if let Some(i) = find(&buf, b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + len);
                        let n = requests.fetch_add(1, Ordering::SeqCst);
                        let (answer, close) = script(n);
                        if s.write_all(&answer).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (url, conns)
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    async fn post(url: &url::Url, timeout: Duration) -> Result<Answer, SendError> {
        exchange(
            &Target::new(url).unwrap(),
            hyper::Method::POST,
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
            timeout,
        )
        .await
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_kept_alive_connection_is_reused() {
        let (url, conns) = server(|_| (OK.to_vec(), false)).await;
        for _ in 0..5 {
            let (status, _, body) = post(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_between_sends_is_not_a_failure() {
        // Kept-alive answers, but the server closes the connection after each.
        let (url, conns) = server(|_| (OK.to_vec(), true)).await;
        let target = Target::new(&url).unwrap();
        for i in 1..=3 {
            let (status, _, _) = post(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(conns.load(Ordering::SeqCst), i);
            // Wait until the client has seen the close of the pooled connection.
            while pool()
                .idle
                .lock()
                .unwrap()
                .get(&target.key)
                .is_some_and(|l| l.iter().any(|i| !i.sender.is_closed()))
            {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn a_connection_that_breaks_after_the_request_is_a_transient_failure() {
        // The server reads the request and closes without answering.
        let (url, _) = server(|_| (Vec::new(), true)).await;
        let e = post(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert!(
            e.message.starts_with("destination connection failed"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("/in"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_reused_connection_closed_without_an_answer_sends_once_more_on_a_new_one() {
        // The keep-alive race: the server closes the idle connection as the next
        // request arrives on it (here: reads it and closes without answering).
        let (url, conns) = server(|n| {
            if n == 1 {
                (Vec::new(), true)
            } else {
                (OK.to_vec(), false)
            }
        })
        .await;
        let (status, _, _) = post(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, conns.load(Ordering::SeqCst)), (200, 1));
        let (status, _, body) = post(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert_eq!(
            conns.load(Ordering::SeqCst),
            2,
            "sent again on a new connection"
        );
    }

    #[tokio::test]
    async fn a_request_sent_again_that_fails_again_is_a_transient_failure() {
        // The first answer keeps the connection; every later request is read and
        // the connection closed without an answer: one more try, then the error.
        let (url, conns) = server(|n| {
            if n == 0 {
                (OK.to_vec(), false)
            } else {
                (Vec::new(), true)
            }
        })
        .await;
        assert_eq!(post(&url, Duration::from_secs(5)).await.unwrap().0, 200);
        let e = post(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert!(
            e.message.starts_with("destination connection failed"),
            "{}",
            e.message
        );
        assert_eq!(
            conns.load(Ordering::SeqCst),
            2,
            "one new connection, not more"
        );
    }

    #[tokio::test]
    async fn a_connection_close_answer_is_not_reused() {
        let (url, conns) = server(|_| {
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        })
        .await;
        for _ in 0..3 {
            let (status, _, body) = post(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_chunked_answer_is_read_whole_and_the_connection_reused() {
        let (url, conns) = server(|_| {
            (
                b"HTTP/1.1 429 Too Many\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n\
                  5\r\nslow \r\n5\r\ndown!\r\n0\r\n\r\n"
                    .to_vec(),
                false,
            )
        })
        .await;
        for _ in 0..2 {
            let (status, headers, body) = post(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!((status, body.as_str()), (429, "slow down!"));
            assert_eq!(headers["retry-after"], "7");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_over_64_kib_is_cut_and_its_connection_not_reused() {
        fn big(_: usize) -> (Vec<u8>, bool) {
            let n = MAX_RESPONSE_BYTES + 10_000;
            let mut a = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").into_bytes();
            a.extend(std::iter::repeat_n(b'a', n));
            (a, false)
        }
        let (url, conns) = server(big).await;
        for _ in 0..2 {
            let (status, _, body) = post(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!((status, body.len()), (200, MAX_RESPONSE_BYTES));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_as_transient() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            // Holds the connection open, reading nothing, until the test ends.
            std::future::pending::<()>().await;
            drop(s);
        });
        let e = post(&url, Duration::from_millis(200)).await.unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.message, "destination timed out");
        hold.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_and_says_so() {
        let addr = super::super::test_support::refused_addr();
        let url = url::Url::parse(&format!("http://{addr}/secret-path")).unwrap();
        let e = post(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.is_transient());
        assert!(
            e.message.starts_with("destination could not connect: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("refused"), "{}", e.message);
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn targets_carry_host_port_and_path() {
        let t =
            Target::new(&url::Url::parse("https://hooks.example/a/b?c=d#frag").unwrap()).unwrap();
        assert_eq!(
            (
                t.key.as_str(),
                t.host.as_str(),
                t.port,
                t.authority.to_str().unwrap()
            ),
            (
                "https://hooks.example:443",
                "hooks.example",
                443,
                "hooks.example"
            )
        );
        assert_eq!(t.path, "/a/b?c=d");
        let t = Target::new(&url::Url::parse("http://[::1]:8080").unwrap()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.to_str().unwrap()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(t.path, "/");
        assert!(t.auth.is_none());
        // As the general client did: credentials in the URL become basic auth,
        // percent-decoded, and are not part of the key, `Host` or path.
        let t = Target::new(&url::Url::parse("https://ops:p%40ss%20w@hooks.example/in").unwrap())
            .unwrap();
        assert_eq!(
            t.auth.as_ref().unwrap(),
            &super::super::basic_auth("ops", "p@ss w")
        );
        assert!(t.auth.as_ref().unwrap().is_sensitive());
        assert_eq!(
            (t.key.as_str(), t.authority.to_str().unwrap()),
            ("https://hooks.example:443", "hooks.example")
        );
        assert_eq!(t.path, "/in");
        let shown = format!("{t:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("/in"), "{shown}");
        assert!(Target::new(&url::Url::parse("ftp://x/").unwrap())
            .unwrap_err()
            .is_permanent());
    }
}
