//! A small real SMTP server for tests, and (through `examples/smtp_sink.rs`)
//! for the benchmark: it accepts every message on a real loopback socket and
//! keeps it in memory.
//!
//! It speaks enough SMTP for lettre's pooled transport: EHLO/HELO, MAIL, RCPT,
//! DATA, RSET, NOOP and QUIT, many messages per connection and many connections
//! at once. No TLS, no AUTH. Anything else gets `502`.
//!
//! A message is recorded *before* its `250` is written, so once a client has
//! seen `250` the sink has the message: a test may assert right after `send()`
//! returns. The other side of that choice is the at-least-once reality of SMTP:
//! a client that loses the connection after the sink recorded a message but
//! before it read the `250` will send it again, and the sink keeps both copies
//! (which is why the benchmark counts unique Message-IDs next to messages).
//!
//! `set_failing(true)` answers `MAIL FROM` with `451 4.3.0 try again later`,
//! which lettre reports as a transient error (`err.is_transient()`);
//! `set_mail_delay(d)` answers it only after `d`.
//!
//! Timing, as with a real server: lettre 0.11.23 writes a message's final
//! `\r\n.\r\n` as a second small write on a socket without TCP_NODELAY, so
//! Nagle's algorithm holds it until this side's delayed ACK, about 40 ms per
//! message on Linux (fixed upstream in lettre PR #1159, not yet released).
//! The sink does not hide that: a Postfix on Linux would cost the same.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// The `MAIL FROM` address, without angle brackets.
    pub from: String,
    /// The `RCPT TO` addresses, without angle brackets, in order.
    pub to: Vec<String>,
    /// The message as received: headers and body, CRLF line ends, dot-stuffing
    /// undone, without the line end that is part of the `\r\n.\r\n` terminator.
    pub raw: String,
    /// The `Message-ID` header as written, angle brackets included: `<key@host>`.
    pub message_id: Option<String>,
    /// The `Subject` header, unfolded, with RFC 2047 encoded words decoded
    /// (lettre encodes non-ASCII subjects as `=?utf-8?b?…?=`).
    pub subject: Option<String>,
}

impl ReceivedMail {
    /// The body after the header section, with the message's
    /// Content-Transfer-Encoding undone: quoted-printable (soft line breaks
    /// `=\r\n` removed, `=3D` and the like decoded) or base64 (lettre picks it
    /// over quoted-printable when that is shorter). Any other encoding (7bit,
    /// 8bit) is returned as is. Only the top-level encoding is undone: a
    /// multipart message comes back with its parts as sent.
    /// The token right after `marker` in the body (`token=` of an invite
    /// link, `/reset-password#token=` of a reset link, ...).
    pub fn link_token(&self, marker: &str) -> String {
        let body = self.body();
        let start = body
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in the email: {body}"))
            + marker.len();
        body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    pub fn body(&self) -> String {
        let body = split_head(&self.raw).1;
        let encoding = self.header("content-transfer-encoding").unwrap_or_default();
        if encoding.eq_ignore_ascii_case("quoted-printable") {
            String::from_utf8_lossy(&decode_quoted_printable(body)).into_owned()
        } else if encoding.eq_ignore_ascii_case("base64") {
            match decode_base64(body) {
                Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                None => body.to_owned(),
            }
        } else {
            body.to_owned()
        }
    }

    /// Any header's value, unfolded and trimmed, by case-insensitive name (the
    /// first one if the header repeats). Encoded words are left as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.raw, name)
    }
}

struct Shared {
    mails: Mutex<Vec<ReceivedMail>>,
    /// The number of recorded messages, for `wait_for` to wait on without polling.
    count: watch::Sender<usize>,
    failing: AtomicBool,
    /// Milliseconds to wait before answering `MAIL FROM`.
    mail_delay_ms: AtomicU64,
    /// Asks the accept loop to close the port and end every session.
    stop: Notify,
}

impl Shared {
    /// Records a message; returns its 1-based sequence number.
    fn record(&self, mail: ReceivedMail) -> usize {
        let mut mails = self.mails.lock().unwrap();
        mails.push(mail);
        let n = mails.len();
        // Under the lock, so the watched count never goes backwards.
        self.count.send_replace(n);
        n
    }
}

pub struct SmtpSink {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    /// The accept loop; it owns the listener and every session, so aborting it
    /// closes the port and every open connection, like a server that died.
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// A sink on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the SMTP sink to 127.0.0.1:0")
    }

    /// A sink on `addr` (port 0: any free port). For the benchmark's sink
    /// process, and for tests that stop a sink and start a new one on the same
    /// port: stop the first with [`SmtpSink::shutdown`], which returns once the
    /// port is free. The new sink starts with no messages.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            mails: Mutex::new(Vec::new()),
            count,
            failing: AtomicBool::new(false),
            mail_delay_ms: AtomicU64::new(0),
            stop: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            url: format!("smtp://{addr}"),
            shared,
            task,
        })
    }

    /// `smtp://127.0.0.1:PORT`, for `COOP_SMTP_URL` and lettre's `from_url`.
    ///
    /// Borrowed rather than owned so it drops into `&str` argument lists
    /// (`vec!["--smtp-url", sink.url()]`); `&sink.url()` and `format!` work too.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.mails.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Distinct `Message-ID`s among the messages received (messages without one
    /// are not counted). Fewer than `count()` means something was sent twice.
    pub fn unique_message_ids(&self) -> usize {
        let mails = self.shared.mails.lock().unwrap();
        mails
            .iter()
            .filter_map(|mail| mail.message_id.as_deref())
            .collect::<HashSet<_>>()
            .len()
    }

    /// Waits for the first message to `address`, takes it out of the sink
    /// (later counts leave it out) and returns it; panics after `timeout`.
    /// For mail a test's setup reads, such as a founder's confirmation link.
    pub async fn take_mail_to(&self, address: &str, timeout: Duration) -> ReceivedMail {
        let mut count = self.shared.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut mails = self.shared.mails.lock().unwrap();
                if let Some(at) = mails
                    .iter()
                    .position(|m| m.to.iter().any(|to| to == address))
                {
                    let mail = mails.remove(at);
                    self.shared.count.send_replace(mails.len());
                    return mail;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!("no email to {address} within {timeout:?}");
            }
            let _ = tokio::time::timeout(left, count.changed()).await;
        }
    }

    /// Waits until at least `n` messages have arrived, or `timeout` has passed,
    /// and returns what arrived (check its length: fewer than `n` is a timeout).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let mut count = self.shared.count.subscribe();
        let _ = tokio::time::timeout(timeout, count.wait_for(|&count| count >= n)).await;
        self.messages()
    }

    /// Answers each `MAIL FROM` only after `delay`: slower sends, so a test can
    /// be sure a worker is mid-job. (Before the message, so it does not widen
    /// the window between the sink recording a message and the client seeing 250.)
    pub fn set_mail_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.mail_delay_ms.store(millis, Ordering::SeqCst);
    }

    /// While failing, `MAIL FROM` is answered `451 4.3.0 try again later` and
    /// nothing is recorded; a transient failure as lettre classifies it.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Stops the sink like a server that died: returns once its port is closed
    /// and every connection to it dropped (dropping the sink stops it too, but
    /// without waiting). What it received stays readable.
    pub async fn shutdown(&mut self) {
        if self.task.is_finished() {
            return; // already stopped: a finished handle must not be awaited again
        }
        // A stored permit if the loop is busy: the request is not lost.
        self.shared.stop.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Sessions live in the set so that stopping (or aborting) this task ends
    // them too; finished ones are reaped as they end.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.stop.notified() => {
                drop(listener);
                sessions.shutdown().await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move {
                        // A client that hangs up mid-session is not the sink's problem.
                        let _ = session(stream, &shared).await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// One SMTP conversation (RFC 5321), until QUIT or the client hangs up.
async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Each reply is one small write: without this, Nagle's algorithm could hold
    // one back until the client's delayed ACK (~40 ms).
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write
        .write_all(b"220 localhost ESMTP coop test sink\r\n")
        .await?;
    // The transaction under way: MAIL FROM, then the RCPT TO addresses.
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
        let reply: std::borrow::Cow<'static, str> = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                (from, to) = (None, Vec::new());
                // SMTPUTF8 too, so a non-ASCII address is not refused by lettre
                // before it reaches the sink.
                "250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
            }
            "HELO" => {
                (from, to) = (None, Vec::new());
                "250 localhost\r\n".into()
            }
            "MAIL" if !starts_with_ignore_case(argument, "FROM:") => {
                "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into()
            }
            "MAIL" if shared.failing.load(Ordering::SeqCst) => {
                (from, to) = (None, Vec::new());
                "451 4.3.0 try again later\r\n".into()
            }
            "MAIL" => {
                let delay = shared.mail_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                from = Some(address(&argument["FROM:".len()..]));
                to.clear();
                "250 2.1.0 ok\r\n".into()
            }
            "RCPT" if !starts_with_ignore_case(argument, "TO:") => {
                "501 5.5.4 syntax: RCPT TO:<address>\r\n".into()
            }
            "RCPT" if from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
            "RCPT" => {
                to.push(address(&argument["TO:".len()..]));
                "250 2.1.5 ok\r\n".into()
            }
            "DATA" if to.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(raw) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let mail = ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    message_id: header(&raw, "message-id"),
                    subject: header(&raw, "subject").map(|s| decode_encoded_words(&s)),
                    raw,
                };
                // Recorded before the 250 goes out: see the module comment.
                let n = shared.record(mail);
                format!("250 2.0.0 queued as {n}\r\n").into()
            }
            "RSET" => {
                (from, to) = (None, Vec::new());
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// The message after `354`, up to the line holding only `.`, with dot-stuffing
/// undone; `None` if the client hung up first.
async fn read_data(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            // The line end before the "." is the end of the terminator
            // (`\r\n.\r\n`), which lettre appends to the message as given:
            // without it, `raw` is exactly the message the client formatted.
            if data.ends_with(b"\r\n") {
                data.truncate(data.len() - 2);
            } else if data.ends_with(b"\n") {
                data.truncate(data.len() - 1);
            }
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        // A line the client started with "." was sent with a second "." in front.
        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// `<a@b> BODY=8BITMIME` → `a@b`; `<>` (the null sender) → the empty string.
fn address(path: &str) -> String {
    let path = path.trim();
    match (path.find('<'), path.find('>')) {
        (Some(start), Some(end)) if end > start => path[start + 1..end].to_owned(),
        _ => path.split(' ').next().unwrap_or("").to_owned(),
    }
}

/// (header section, body), split at the first empty line.
fn split_head(raw: &str) -> (&str, &str) {
    for separator in ["\r\n\r\n", "\n\n"] {
        if let Some((head, body)) = raw.split_once(separator) {
            return (head, body);
        }
    }
    (raw, "")
}

/// A header's value, unfolded (RFC 5322 §2.2.3: a line starting with a space
/// or tab continues the one before) and trimmed, by case-insensitive name.
fn header(raw: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in split_head(raw).0.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                value.push_str(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((key, value)) = line.split_once(':')
            && key.trim().eq_ignore_ascii_case(name)
        {
            found = Some(value.to_owned());
        }
    }
    found.map(|value| value.trim().to_owned())
}

/// Quoted-printable (RFC 2045 §6.7): `=\r\n` is a soft line break, `=XX` a byte.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes[i + 1..].starts_with(b"\r\n") {
            i += 3;
        } else if bytes[i + 1..].starts_with(b"\n") {
            i += 2;
        } else if let Some(byte) = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            // Not valid quoted-printable; keep the "=" as the spec suggests.
            out.push(b'=');
            i += 1;
        }
    }
    out
}

/// Standard base64, whitespace ignored; `None` if it is not base64.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded, read as
/// UTF-8 whatever the charset says; whitespace between two encoded words is
/// dropped, as the RFC says. Anything that does not parse stays as it is.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((decoded, len)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = &candidate[len..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The encoded word at the start of `text`: (decoded text, length consumed).
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    let bytes = match encoding {
        "B" | "b" => decode_base64(payload)?,
        "Q" | "q" => decode_quoted_printable(&payload.replace('_', " ")),
        _ => return None,
    };
    let consumed = text.len() - (inner.len() - end - 2);
    Some((String::from_utf8_lossy(&bytes).into_owned(), consumed))
}

#[cfg(test)]
mod tests {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    use super::*;

    fn message(n: usize, subject: &str, body: &str) -> Message {
        Message::builder()
            .from("Coop <no-reply@coop.localhost>".parse().unwrap())
            .to(format!("family{n}@example.org").parse().unwrap())
            .to("second@example.org".parse().unwrap())
            .subject(subject)
            .message_id(Some(format!("<test.{n}@coop.localhost>")))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .unwrap()
    }

    fn transport(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .build()
    }

    #[tokio::test]
    async fn smtp_sink_receives_what_lettre_sends() {
        let sink = SmtpSink::start().await;
        assert_eq!(sink.url(), format!("smtp://{}", sink.addr()));
        let smtp = transport(sink.addr().port());
        // Lettre picks each body's encoding: 7bit for short ASCII lines,
        // quoted-printable for a long line with "=" in it, base64 for mostly
        // non-ASCII text (shorter than quoted-printable there).
        let long = format!("a = b, {}\r\n", "x".repeat(200));
        let bodies = [
            ".leading dot\r\nplain body\r\n".to_owned(),
            long.clone(),
            format!("{}\r\n", "äöüß€".repeat(30)),
        ];
        let subjects = ["Hello 0", "Hello 1", "Willkommen bei Müller & Söhne"];
        for n in 0..3 {
            smtp.send(message(n, subjects[n], &bodies[n]))
                .await
                .expect("sent");
        }
        // One more through `from_url`, as Coop configures it.
        let by_url = AsyncSmtpTransport::<Tokio1Executor>::from_url(sink.url())
            .unwrap()
            .build();
        by_url
            .send(message(3, "By URL", "via from_url\r\n"))
            .await
            .expect("sent");

        // Recorded before the 250: no waiting needed.
        assert_eq!(sink.count(), 4);
        let mails = sink.wait_for(4, Duration::from_secs(1)).await;
        for (n, mail) in mails.iter().enumerate() {
            assert_eq!(mail.from, "no-reply@coop.localhost");
            assert_eq!(
                mail.to,
                vec![
                    format!("family{n}@example.org"),
                    "second@example.org".to_owned()
                ]
            );
            assert_eq!(
                mail.message_id.as_deref(),
                Some(format!("<test.{n}@coop.localhost>").as_str())
            );
        }
        assert_eq!(mails[0].subject.as_deref(), Some("Hello 0"));
        let encodings: Vec<_> = mails[..3]
            .iter()
            .map(|mail| mail.header("content-transfer-encoding"))
            .collect();
        assert_eq!(
            encodings,
            [Some("7bit"), Some("quoted-printable"), Some("base64")].map(|e| e.map(str::to_owned))
        );
        assert_eq!(mails[0].body(), ".leading dot\r\nplain body\r\n");
        assert_eq!(mails[1].body(), long, "raw: {}", mails[1].raw);
        assert_eq!(
            mails[2].subject.as_deref(),
            Some(subjects[2]),
            "raw: {}",
            mails[2].raw
        );
        assert_eq!(mails[2].body(), bodies[2], "raw: {}", mails[2].raw);
        assert_eq!(mails[3].subject.as_deref(), Some("By URL"));
        assert_eq!(sink.unique_message_ids(), 4);
    }

    #[tokio::test]
    async fn smtp_sink_can_refuse_transiently_and_answer_slowly() {
        let sink = SmtpSink::start().await;
        let smtp = transport(sink.addr().port());
        sink.set_failing(true);
        let err = smtp
            .send(message(0, "Refused", "no\r\n"))
            .await
            .expect_err("refused while failing");
        assert!(err.is_transient(), "not transient: {err:?}");
        assert_eq!(sink.count(), 0);

        sink.set_failing(false);
        sink.set_mail_delay(Duration::from_millis(200));
        let started = std::time::Instant::now();
        smtp.send(message(1, "Accepted", "yes\r\n"))
            .await
            .expect("accepted again");
        assert!(started.elapsed() >= Duration::from_millis(200), "delayed");
        assert_eq!(sink.count(), 1);
    }

    #[tokio::test]
    async fn smtp_sink_serves_concurrent_connections_and_restarts_on_its_port() {
        let mut sink = SmtpSink::start().await;
        let addr = sink.addr();
        let smtp = transport(addr.port());
        let sends = (0..20).map(|n| smtp.send(message(n, "Concurrent", "x\r\n")));
        for result in futures::future::join_all(sends).await {
            result.expect("sent");
        }
        assert_eq!(sink.count(), 20);
        assert_eq!(sink.unique_message_ids(), 20);
        // wait_for gives up after its timeout and returns what arrived.
        let mails = sink.wait_for(21, Duration::from_millis(50)).await;
        assert_eq!(mails.len(), 20);

        sink.shutdown().await;
        sink.shutdown().await; // twice is harmless
        assert_eq!(sink.count(), 20, "still readable after shutdown");
        let restarted = SmtpSink::start_on(addr).await.expect("port free again");
        assert_eq!(restarted.count(), 0);
        // The pool's old connections are gone; lettre opens new ones.
        let mut sent = smtp.send(message(99, "After restart", "x\r\n")).await;
        if sent.is_err() {
            // A pooled connection may be found dead only when used.
            sent = smtp.send(message(99, "After restart", "x\r\n")).await;
        }
        sent.expect("sent after restart");
        assert_eq!(restarted.count(), 1);
    }

    #[test]
    fn headers_unfold_and_decode() {
        let raw = "Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n =?utf-8?q?_aus_K=C3=B6ln?=\r\n\
                   message-id:\r\n <a@b>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   a=3Db soft=\r\nbreak\r\n";
        let mail = ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            raw: raw.to_owned(),
            message_id: header(raw, "Message-ID"),
            subject: header(raw, "subject").map(|s| decode_encoded_words(&s)),
        };
        assert_eq!(mail.message_id.as_deref(), Some("<a@b>"));
        assert_eq!(mail.subject.as_deref(), Some("Grüße aus Köln"));
        assert_eq!(mail.body(), "a=b softbreak\r\n");
        assert_eq!(decode_encoded_words("plain =? text"), "plain =? text");
    }
}
