//! Pooled plain SMTP connections with TCP_NODELAY, for `smtp://host:port`
//! URLs (a local relay such as postfix on the same host or network).
//!
//! Why not lettre's own pool: lettre 0.11.23 (the newest release) never sets
//! TCP_NODELAY, and it writes a message's final `.` separately from its body,
//! so Nagle's algorithm holds that `.` until the server's delayed ACK: 40 ms
//! per email on Linux (lettre#1159, merged upstream, not yet released). Those
//! 40 ms were most of a send and, worse, widened the window in which a worker
//! crash repeats an email: the kernel still delivers the held `.` after the
//! process died. We keep lettre for everything else (messages, the SMTP
//! dialogue through `AsyncSmtpConnection`, TLS and credentials via its own
//! transport) and only open the TCP connection ourselves. Delete this module
//! once a lettre release sets TCP_NODELAY.

use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

/// Most connections open at once (lettre's pool default).
const MAX_CONNECTIONS: usize = 10;
/// An idle connection older than this is checked with NOOP before reuse:
/// servers close idle sessions (RFC 5321 suggests 5 minutes).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

pub struct PlainSmtp {
    host: String,
    port: u16,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// [`CHECK_AFTER_IDLE`] (a field so a test can check at once).
    check_after_idle: Duration,
    permits: Semaphore,
}

impl PlainSmtp {
    /// `Some` for `smtp://host[:port]` without credentials or options: the
    /// URLs this module serves. Anything else goes to lettre's transport.
    pub fn for_url(url: &str, timeout: Duration) -> Option<Self> {
        let parsed = reqwest::Url::parse(url).ok()?;
        let plain = parsed.scheme() == "smtp"
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.query().is_none();
        if !plain {
            return None;
        }
        Some(Self {
            host: parsed.host_str()?.to_owned(),
            port: parsed.port().unwrap_or(25),
            timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            check_after_idle: CHECK_AFTER_IDLE,
            permits: Semaphore::new(MAX_CONNECTIONS),
        })
    }

    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), PlainError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PlainError::Network("the SMTP pool is closed".into()))?;
        let mut conn = match self.take_idle().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match tokio::time::timeout(self.timeout, conn.send(envelope, message)).await {
            Ok(Ok(_)) => {
                self.idle.lock().await.push((conn, Instant::now()));
                Ok(())
            }
            Ok(Err(err)) => {
                // A refused message leaves a usable session; a broken one is dropped.
                if !conn.has_broken() {
                    self.idle.lock().await.push((conn, Instant::now()));
                }
                Err(PlainError::Smtp(err))
            }
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self.idle.lock().await.pop()?;
            if conn.has_broken() {
                continue;
            }
            if since.elapsed() < self.check_after_idle {
                return Some(conn);
            }
            // A server that stopped answering must not hold the job past
            // COOP_PROVIDER_TIMEOUT: the check has the same bound as a send.
            let alive = tokio::time::timeout(self.timeout, conn.test_connected())
                .await
                .unwrap_or(false);
            if alive {
                return Some(conn);
            }
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, PlainError> {
        let connecting = async {
            let network = |e: std::io::Error| {
                PlainError::Network(format!("connecting to {}:{}: {e}", self.host, self.port))
            };
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(network)?;
            stream.set_nodelay(true).map_err(network)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                .await
                .map_err(PlainError::Smtp)
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| timed_out(self.timeout))?
    }
}

#[derive(Debug)]
pub enum PlainError {
    /// The server answered with an error, or the dialogue failed.
    Smtp(lettre::transport::smtp::Error),
    /// No connection, or no answer in time.
    Network(String),
}

impl PlainError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Smtp(err) if err.is_permanent())
    }
}

impl std::fmt::Display for PlainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(err) => write!(f, "{err}"),
            Self::Network(message) => f.write_str(message),
        }
    }
}

fn timed_out(after: Duration) -> PlainError {
    PlainError::Network(format!("the SMTP server did not answer within {after:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::Address;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A server that answers a whole first session, then never answers a
    /// NOOP (a relay that hung, or a firewall that drops the idle flow);
    /// every new connection is served normally.
    async fn hanging_on_noop() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 test ESMTP\r\n").await;
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply: &[u8] = if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            b"250 queued\r\n"
                        } else {
                            match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                                "EHLO" | "HELO" => b"250 test\r\n",
                                "DATA" => {
                                    in_data = true;
                                    b"354 go on\r\n"
                                }
                                "NOOP" => continue, // never answered
                                "QUIT" => b"221 bye\r\n",
                                _ => b"250 ok\r\n",
                            }
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// Issue 15: the NOOP check of an idle connection ran outside the
    /// provider timeout, so a server that stopped answering held the job
    /// for ever. Now it gives up within the timeout and opens a new session.
    #[tokio::test]
    async fn an_idle_check_the_server_never_answers_ends_within_the_timeout() {
        let port = hanging_on_noop().await;
        let timeout = Duration::from_millis(500);
        let mut smtp = PlainSmtp::for_url(&format!("smtp://127.0.0.1:{port}"), timeout).unwrap();
        let address: Address = "family@example.org".parse().unwrap();
        let envelope = Envelope::new(Some(address.clone()), vec![address]).unwrap();
        smtp.send(&envelope, b"Subject: one\r\n\r\nfirst\r\n")
            .await
            .expect("the first email");
        // The idle connection is checked before its next use.
        smtp.check_after_idle = Duration::ZERO;
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            smtp.send(&envelope, b"Subject: two\r\n\r\nsecond\r\n"),
        )
        .await
        .expect("the idle check gave up within the provider timeout");
        sent.expect("the second email, on a new session");
    }
}
