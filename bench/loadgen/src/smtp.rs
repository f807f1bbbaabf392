//! A minimal SMTP server on loopback that takes every message and hands the
//! invite token of each welcome email to the seeder.

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;

use crate::util::Result;

/// What the welcome email says right before the bare token.
const MARKER: &str = "should the link not open: ";

/// (recipient, invite token) of one welcome email.
pub type Invite = (String, String);

pub async fn serve(listener: TcpListener, invites: UnboundedSender<Invite>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let invites = invites.clone();
        tokio::spawn(async move {
            if let Err(err) = session(stream, invites).await {
                eprintln!("smtp: session ended: {err}");
            }
        });
    }
}

async fn session(stream: TcpStream, invites: UnboundedSender<Invite>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 coop-loadgen ESMTP\r\n").await?;
    let mut recipients: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-coop-loadgen\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if command.starts_with("RCPT TO:") {
            let addr = line.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            recipients.push(addr);
            b"250 OK\r\n"
        } else if command.starts_with("MAIL FROM:") || command.starts_with("RSET") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut message = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                // Undo dot-stuffing.
                message.push_str(text.strip_prefix('.').unwrap_or(text));
                message.push_str("\r\n");
            }
            if let Some(token) = invite_token(&message) {
                for to in recipients.drain(..) {
                    let _ = invites.send((to, token.clone()));
                }
            }
            recipients.clear();
            b"250 OK queued\r\n"
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 OK\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// The invite token in a welcome email, its transfer encoding undone.
fn invite_token(message: &str) -> Option<String> {
    let (head, body) = message.split_once("\r\n\r\n")?;
    let encoding = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-transfer-encoding")
                .then(|| value.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let text = match encoding.as_str() {
        "quoted-printable" => quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_owned(),
    };
    let start = text.find(MARKER)? + MARKER.len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!token.is_empty()).then_some(token)
}

fn quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes[i..].starts_with(b"=\r\n") {
            i += 3;
        } else if bytes[i..].starts_with(b"=\n") {
            i += 2;
        } else if let Some(v) = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_each_encoding() {
        let plain = "Subject: Welcome\r\n\r\nYour invite code, should the link not open: abc-DEF_123\r\n\r\nBye\r\n";
        assert_eq!(invite_token(plain).as_deref(), Some("abc-DEF_123"));
        let qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\nshould the link not o=\r\npen: abc=\r\n-D=3DEF\r\n";
        assert_eq!(invite_token(qp).as_deref(), Some("abc-D"));
        let b64 = format!(
            "Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64::engine::general_purpose::STANDARD.encode("x should the link not open: tok_1 y")
        );
        assert_eq!(invite_token(&b64).as_deref(), Some("tok_1"));
    }
}
