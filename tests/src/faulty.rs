//! A purpose-built faulty upstream for the fault matrix: a raw TCP listener that speaks
//! just enough HTTP/1.1 to answer KServe v1 predictions, and misbehaves on demand. Raw
//! bytes rather than hyper, so that it can send what no well-behaved server would:
//! garbage, a reset in the middle of a body, a connection refused after accept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What the upstream does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers 200 with one KServe v1 prediction per instance.
    Healthy,
    /// Answers as [`Behaviour::Healthy`] after this delay.
    Slow(Duration),
    /// Resets the connection (RST) without answering, once the request has arrived (on a
    /// new connection as on a kept-alive one: a reset before the client has finished
    /// connecting would read as "unreachable" on a loaded machine, not as a reset).
    Refuse,
    /// Sends the response headers and part of the JSON body, then resets.
    ResetMidBody,
    /// Answers with bytes that are not HTTP, then closes.
    Garbage,
    /// Answers 200 with a JSON body of this many bytes, generated as it is sent.
    Huge(u64),
}

/// The running faulty upstream. [`FaultyUpstream::down`] closes the listener and every
/// connection; [`FaultyUpstream::up`] listens again on the same port.
pub struct FaultyUpstream {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl FaultyUpstream {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Self {
            addr,
            behaviour: Arc::new(Mutex::new(behaviour)),
            task: Mutex::new(None),
        };
        upstream.serve(listener);
        upstream
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes what the next requests get.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Nothing listens any more, and open connections are closed.
    pub fn down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            // The accept task owns the connections' JoinSet: aborting it drops them all.
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        self.down();
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let behaviour = self.behaviour.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let behaviour = behaviour.clone();
                connections.spawn(async move {
                    let _ = connection(stream, &behaviour).await;
                });
                // Finished connections are reaped so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.down();
    }
}

async fn connection(mut stream: TcpStream, behaviour: &Mutex<Behaviour>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let Some(body) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        let current = *behaviour.lock().unwrap();
        match current {
            Behaviour::Healthy => answer(&mut stream, &body).await?,
            Behaviour::Slow(delay) => {
                tokio::time::sleep(delay).await;
                answer(&mut stream, &body).await?;
            }
            Behaviour::Refuse => return reset(stream),
            Behaviour::ResetMidBody => {
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                          content-length: 1000\r\n\r\n{\"predictions\": [0.5, ",
                    )
                    .await?;
                stream.flush().await?;
                return reset(stream);
            }
            Behaviour::Garbage => {
                stream
                    .write_all(b"\x00\x17\x03 this is not HTTP at all \xff\xfe\r\n\r\n")
                    .await?;
                return Ok(());
            }
            Behaviour::Huge(total) => huge(&mut stream, total).await?,
        }
    }
}

/// Closes with RST rather than FIN.
fn reset(stream: TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

/// Reads one request (headers and a `content-length` body); `None` when the peer closed.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Ok(Some(body))
}

/// One prediction per instance of a KServe v1 body.
async fn answer(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let instances = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["instances"].as_array().map(Vec::len))
        .unwrap_or(1);
    let predictions: Vec<f64> = (0..instances).map(|i| 0.5 + i as f64 / 100.0).collect();
    let json = serde_json::json!({ "predictions": predictions }).to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// The start of every huge body; the rest is padding up to the declared length and `"}`.
pub const HUGE_PREFIX: &[u8] = b"{\"predictions\": [0.5], \"padding\": \"";

async fn huge(stream: &mut TcpStream, total: u64) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(HUGE_PREFIX).await?;
    let mut left = total - HUGE_PREFIX.len() as u64 - 2;
    let padding = vec![b'x'; 64 * 1024];
    while left > 0 {
        let n = left.min(padding.len() as u64) as usize;
        stream.write_all(&padding[..n]).await?;
        left -= n as u64;
    }
    stream.write_all(b"\"}").await
}
