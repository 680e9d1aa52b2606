//! The optional Prometheus endpoint (`[metrics] listen`): `GET /metrics` answers with the
//! live counters of [`vmount_core::stats::global`] in the text exposition format 0.0.4.
//!
//! # Design decisions
//! - **std only, one thread, HTTP/1.0.** A scraper asks every few seconds; one
//!   connection at a time, each with short timeouts, is plenty and cannot pile up
//!   threads. No HTTP library for one fixed route.
//! - **Loopback only** (the config refuses anything else): the endpoint has no
//!   authentication, and operation names and counts say something about what users do.
//! - **Bound before mounting,** so a busy port fails the start with one sentence and
//!   nothing mounted; port 0 picks a free port, which `vmount status` shows.
//! - **A histogram, not a summary:** the log2 buckets aggregate across mounts and time,
//!   and percentiles come out of PromQL's `histogram_quantile`. Every second power of two
//!   from about 1 µs to 17 s is exposed as a bucket bound.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};
use vmount_core::stats::{self, Snapshot};

/// How long one client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read.
const HEAD_MAX: usize = 8 << 10;
/// The histogram bounds: 2^bits nanoseconds.
const LE_BITS: [u32; 13] = [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34];

/// Binds the endpoint at `addr` (before mounting; see the module docs).
pub fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match TcpListener::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot serve metrics on {addr}: the port is already in use; choose another \
             `listen` in [metrics] (port 0 picks a free one)"
        ),
        Err(e) => bail!(
            "cannot serve metrics on {addr}: {}",
            crate::config::io_reason(&e)
        ),
    }
}

/// What the `vmount_up` series says about the mount.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The mount's name.
    pub name: String,
    /// Its mountpoint.
    pub mountpoint: String,
    /// The backend serving it.
    pub backend: String,
    /// The filesystem type.
    pub fs: String,
}

/// Serves `listener` on a thread for the rest of the process; returns its address.
pub fn serve(listener: TcpListener, labels: Labels) -> anyhow::Result<SocketAddr> {
    let addr = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    std::thread::Builder::new()
        .name("vmount-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &labels) {
                            tracing::debug!("metrics client: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!("metrics accept: {e}");
                        // Out of descriptors, say: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .context("cannot start the metrics thread")?;
    tracing::info!("metrics at http://{addr}/metrics");
    Ok(addr)
}

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, labels: &Labels) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > HEAD_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", "");
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = render(&stats::global().snapshot(), labels);
            let body = if method == "HEAD" { "" } else { body.as_str() };
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        ("GET" | "HEAD", _) => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "not found: the metrics are at /metrics\n",
        ),
        ("", _) => respond(&mut stream, "400 Bad Request", "text/plain", ""),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics is served\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !ctype.is_empty() {
        let _ = write!(head, "Content-Type: {ctype}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text of `snap`.
pub fn render(snap: &Snapshot, labels: &Labels) -> String {
    let mut out = String::with_capacity(4096);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "vmount_up",
        "gauge",
        "1 while the mount is served.",
    );
    let _ = writeln!(
        out,
        "vmount_up{{name=\"{}\",mountpoint=\"{}\",backend=\"{}\",fs=\"{}\"}} 1",
        escape(&labels.name),
        escape(&labels.mountpoint),
        escape(&labels.backend),
        escape(&labels.fs)
    );
    family(
        &mut out,
        "vmount_ops_total",
        "counter",
        "Operations served, by operation.",
    );
    for o in &snap.ops {
        let _ = writeln!(
            out,
            "vmount_ops_total{{op=\"{}\"}} {}",
            o.op.name(),
            o.count
        );
    }
    family(
        &mut out,
        "vmount_op_errors_total",
        "counter",
        "Operations that failed, by operation.",
    );
    for o in &snap.ops {
        let _ = writeln!(
            out,
            "vmount_op_errors_total{{op=\"{}\"}} {}",
            o.op.name(),
            o.errors
        );
    }
    family(
        &mut out,
        "vmount_op_duration_seconds",
        "histogram",
        "Time the filesystem took per operation.",
    );
    for o in &snap.ops {
        let op = o.op.name();
        for bits in LE_BITS {
            let le = (1u64 << bits) as f64 / 1e9;
            let _ = writeln!(
                out,
                "vmount_op_duration_seconds_bucket{{op=\"{op}\",le=\"{le}\"}} {}",
                o.count_within_pow2(bits)
            );
        }
        let _ = writeln!(
            out,
            "vmount_op_duration_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}",
            o.count
        );
        let _ = writeln!(
            out,
            "vmount_op_duration_seconds_sum{{op=\"{op}\"}} {}",
            o.total_ns as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "vmount_op_duration_seconds_count{{op=\"{op}\"}} {}",
            o.count
        );
    }
    family(
        &mut out,
        "vmount_bytes_read_total",
        "counter",
        "Bytes of file data read by clients.",
    );
    let _ = writeln!(out, "vmount_bytes_read_total {}", snap.bytes_read());
    family(
        &mut out,
        "vmount_bytes_written_total",
        "counter",
        "Bytes of file data written by clients.",
    );
    let _ = writeln!(out, "vmount_bytes_written_total {}", snap.bytes_written());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmount_core::stats::{Op, OpStats};

    fn labels() -> Labels {
        Labels {
            name: "a\"b".into(),
            mountpoint: "/m".into(),
            backend: "fuse".into(),
            fs: "memfs".into(),
        }
    }

    #[test]
    fn exposition_is_well_formed() {
        let s = OpStats::new();
        s.record(Op::Read, Duration::from_micros(3), true, 100);
        s.record(Op::Read, Duration::from_millis(2), false, 0);
        s.record(Op::Write, Duration::from_micros(1), true, 7);
        let text = render(&s.snapshot(), &labels());
        assert!(text.contains(
            "vmount_up{name=\"a\\\"b\",mountpoint=\"/m\",backend=\"fuse\",fs=\"memfs\"} 1"
        ));
        assert!(text.contains("vmount_ops_total{op=\"read\"} 2\n"), "{text}");
        assert!(text.contains("vmount_op_errors_total{op=\"read\"} 1\n"));
        assert!(text.contains("vmount_op_duration_seconds_bucket{op=\"read\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("vmount_op_duration_seconds_count{op=\"write\"} 1\n"));
        assert!(text.contains("vmount_bytes_read_total 100\n"));
        assert!(text.contains("vmount_bytes_written_total 7\n"));
        // Cumulative buckets never decrease.
        let read: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("vmount_op_duration_seconds_bucket{op=\"read\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(read.len(), LE_BITS.len() + 1);
        assert!(read.windows(2).all(|w| w[0] <= w[1]), "{read:?}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn serves_get_and_refuses_the_rest() {
        let listener = bind(Some("127.0.0.1:0".parse().unwrap())).unwrap().unwrap();
        let addr = serve(listener, labels()).unwrap();
        let ask = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(ok.contains("vmount_up{"));
        assert!(ask("GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(ask("POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        let busy = bind(Some(addr)).unwrap_err().to_string();
        assert!(busy.contains("already in use"), "{busy}");
    }
}
