//! The metrics endpoint: an HTTP responder on its own thread that serves `GET /metrics` and nothing else.
//!
//! The body is the Prometheus text format (0.0.4), or OpenMetrics when the scraper's `Accept` header asks for
//! `application/openmetrics-text` (as Prometheus does). Any other path is 404, any other method 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tiny_http::{Header, Method, Request, Response, Server};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running metrics endpoint; dropping it stops the thread.
pub(crate) struct MetricsServer {
    server: Arc<Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `registry` from a thread named `cnlink-metrics`.
    pub(crate) fn start(addr: SocketAddr, registry: Registry) -> anyhow::Result<MetricsServer> {
        let server = Server::http(addr)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
        let server = Arc::new(server);
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let registry = Arc::new(registry);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("cnlink-metrics".into())
            .spawn(move || {
                for req in s.incoming_requests() {
                    respond(req, &registry);
                }
            })
            .context("starting the metrics thread")?;
        Ok(MetricsServer { server, addr, thread: Some(thread) })
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both are fixed ASCII strings of ours.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Whether the scraper prefers OpenMetrics.
fn wants_openmetrics(req: &Request) -> bool {
    req.headers().iter().any(|h| h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text"))
}

fn respond(req: Request, registry: &Registry) {
    let path = req.url().split('?').next().unwrap_or("");
    let response = match (req.method(), path) {
        (Method::Get | Method::Head, "/metrics") => {
            let openmetrics = wants_openmetrics(&req);
            let mut body = String::with_capacity(4096);
            let (encoded, content_type) = if openmetrics {
                (text::encode(&mut body, registry), OPENMETRICS)
            } else {
                (prometheus_text::encode(&mut body, registry), prometheus_text::CONTENT_TYPE)
            };
            match encoded {
                Ok(()) => Response::from_string(body).with_header(header("Content-Type", content_type)),
                Err(_) => Response::from_string("encoding the metrics failed\n").with_status_code(500),
            }
        }
        (Method::Get | Method::Head, _) => {
            Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
        }
        _ => Response::from_string("method not allowed\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD")),
    };
    // A scraper that went away is not our problem.
    let _ = req.respond(response);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;
    use crate::service::metrics::Metrics;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_nothing_else() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Metrics::new().into_registry()).unwrap();
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        let text = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        assert!(text.contains("# TYPE cnlink_build_info gauge"), "{text}");
        let om = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
        );
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        let other = get(addr, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = MetricsServer::start(addr, Metrics::new().into_registry()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("cannot listen on {addr}")), "{msg}");
        assert!(msg.to_lowercase().contains("in use"), "{msg}");
    }
}
