//! A small real SMTP server for tests (and, through `examples/smtp_sink.rs`,
//! for the benchmark): it accepts every message over a real socket and keeps
//! it. A message is recorded before its `250` is written, so "the client saw
//! 250" implies "the sink has it".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub raw: String,
    pub message_id: Option<String>,
    pub subject: Option<String>,
}

impl ReceivedMail {
    /// The body after the headers, with quoted-printable undone if used.
    pub fn body(&self) -> String {
        let body = self
            .raw
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned();
        let quoted = header(&self.raw, "content-transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if quoted { decode_qp(&body) } else { body }
    }
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<ReceivedMail>>,
    failing: AtomicBool,
    /// Milliseconds to wait before answering `MAIL FROM`.
    mail_delay_ms: std::sync::atomic::AtomicU64,
}

pub struct SmtpSink {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind the SMTP sink")
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    let _ = session(stream, &shared).await;
                });
            }
        });
        Ok(Self {
            url: format!("smtp://{addr}"),
            shared,
            task,
        })
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.mails.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.mails.lock().unwrap().len()
    }

    /// Waits until at least `n` messages arrived (or `timeout` passed) and
    /// returns what arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let started = Instant::now();
        while self.count() < n && started.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.messages()
    }

    /// Answers each `MAIL FROM` only after `delay`: slower sends, so a test
    /// can be sure a worker is mid-job. (Before the message, so it does not
    /// widen the window between acceptance and the sender's record.)
    pub fn set_mail_delay(&self, delay: Duration) {
        self.shared
            .mail_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// While failing, `MAIL FROM` gets `451` (a transient failure).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Replies are small writes that follow each other: without this, Nagle's
    // algorithm holds a reply until the client's delayed ACK (~40 ms).
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink\r\n",
            "MAIL" if shared.failing.load(Ordering::SeqCst) => b"451 4.3.0 try again later\r\n",
            "MAIL" => {
                let delay = shared.mail_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                from = address(&command);
                to.clear();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" => {
                to.push(address(&command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut raw = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Undo dot-stuffing.
                    raw.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = ReceivedMail {
                    message_id: header(&raw, "message-id"),
                    subject: header(&raw, "subject"),
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    raw,
                };
                shared.mails.lock().unwrap().push(mail);
                b"250 2.0.0 queued\r\n"
            }
            "RSET" => {
                to.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not recognised\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address in `MAIL FROM:<a@b>` / `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    match (command.find('<'), command.find('>')) {
        (Some(start), Some(end)) if end > start => command[start + 1..end].to_owned(),
        _ => command
            .split_once(':')
            .map_or("", |(_, a)| a.trim())
            .to_owned(),
    }
}

/// A header's value (unfolded), by case-insensitive name.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    use super::*;

    fn message(n: usize) -> Message {
        Message::builder()
            .from("Coop <no-reply@coop.localhost>".parse().unwrap())
            .to(format!("family{n}@example.org").parse().unwrap())
            .subject(format!("Hello {n}"))
            .message_id(Some(format!("<test.{n}@coop.localhost>")))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(".leading dot\r\nbody {n} with a = sign\r\n"))
            .unwrap()
    }

    #[tokio::test]
    async fn receives_what_lettre_sends_and_can_refuse() {
        let sink = SmtpSink::start().await;
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(sink.url())
            .unwrap()
            .build();
        for n in 0..3 {
            smtp.send(message(n)).await.expect("sent");
        }
        let mails = sink.messages();
        assert_eq!(mails.len(), 3);
        assert_eq!(mails[1].from, "no-reply@coop.localhost");
        assert_eq!(mails[1].to, vec!["family1@example.org"]);
        assert_eq!(mails[1].subject.as_deref(), Some("Hello 1"));
        assert_eq!(
            mails[1].message_id.as_deref(),
            Some("<test.1@coop.localhost>")
        );
        assert!(
            mails[1]
                .body()
                .starts_with(".leading dot\r\nbody 1 with a = sign"),
            "{}",
            mails[1].body()
        );

        sink.set_failing(true);
        let err = smtp.send(message(9)).await.expect_err("refused");
        assert!(err.is_transient(), "{err}");
        assert_eq!(sink.count(), 3);
    }
}
