//! Outgoing email: SMTP through lettre behind a circuit breaker, or, in the
//! embedded tier without `COOP_SMTP_URL`, `.eml` files in an outbox folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::ProviderSettings;
use super::breaker::{Breaker, Permit};
use super::smtp_plain::PlainSmtp;

/// One email to send. `message_id` must be stable across reruns of the job that
/// sends it, so a duplicate after a crash is recognisably the same message.
pub struct Email {
    pub to: Mailbox,
    pub subject: String,
    pub body: String,
    pub message_id: String,
}

#[derive(Debug)]
pub enum SendError {
    /// The breaker is open: nothing was sent; try again at `retry_at`.
    Open { retry_at: Instant },
    /// Worth retrying later (connection refused, timeout, 4xx reply).
    Transient(String),
    /// Retrying will not help (a 5xx reply such as an unknown mailbox, an
    /// address that cannot be written as an email).
    Permanent(String),
}

enum Transport {
    /// `smtp://host:port`: see `smtp_plain` for why not lettre's pool.
    Plain(PlainSmtp),
    /// TLS, credentials or options: lettre's transport.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    breaker: Breaker,
}

impl Mailer {
    /// `data_dir`: where the outbox folder goes when no SMTP server is set.
    pub fn new(config: &ProviderSettings, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .context("COOP_MAIL_FROM is not a mailbox")?;
        let transport = match &config.smtp_url {
            Some(url) if let Some(plain) = PlainSmtp::for_url(url, config.provider_timeout) => {
                Transport::Plain(plain)
            }
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("COOP_SMTP_URL is not a valid SMTP URL")?
                    .timeout(Some(config.provider_timeout))
                    .build(),
            ),
            None => {
                let folder = data_dir.join("outbox");
                std::fs::create_dir_all(&folder).with_context(|| {
                    format!("could not create the email outbox {}", folder.display())
                })?;
                Transport::Outbox(AsyncFileTransport::new(&folder), folder)
            }
        };
        Ok(Self {
            transport,
            from,
            breaker: Breaker::new("smtp", config.breaker()),
        })
    }

    /// Where mail goes, for the start-up log.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Plain(_) | Transport::Smtp(_) => "SMTP (COOP_SMTP_URL)".to_owned(),
            Transport::Outbox(_, folder) => format!("files in {}", folder.display()),
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    fn permit(&self) -> Result<Permit, SendError> {
        self.breaker
            .try_acquire(Instant::now())
            .map_err(|rejected| SendError::Open {
                retry_at: rejected.retry_at,
            })
    }

    /// Reports the outcome to the breaker. A permanent rejection (5xx) means
    /// the server is up and answering: only failures to get an answer count
    /// against it. `error`: (permanent, message).
    fn settle(&self, permit: Permit, error: Option<(bool, String)>) -> Result<(), SendError> {
        let server_healthy = error.as_ref().is_none_or(|(permanent, _)| *permanent);
        self.breaker.record(permit, server_healthy, Instant::now());
        match error {
            None => Ok(()),
            Some((true, message)) => Err(SendError::Permanent(format!(
                "the SMTP server refused the email: {message}"
            ))),
            Some((false, message)) => Err(SendError::Transient(format!("SMTP: {message}"))),
        }
    }

    pub async fn send(&self, email: Email) -> Result<(), SendError> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(email.to)
            .subject(email.subject)
            .message_id(Some(email.message_id))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body)
            .map_err(|e| SendError::Permanent(format!("could not build the email: {e}")))?;
        match &self.transport {
            Transport::Outbox(outbox, _) => outbox
                .send(message)
                .await
                .map(drop)
                .map_err(|e| SendError::Transient(format!("writing to the outbox: {e}"))),
            Transport::Plain(plain) => {
                let permit = self.permit()?;
                let envelope = message.envelope().clone();
                let result = plain.send(&envelope, &message.formatted()).await;
                self.settle(
                    permit,
                    result
                        .as_ref()
                        .err()
                        .map(|e| (e.is_permanent(), e.to_string())),
                )
            }
            Transport::Smtp(smtp) => {
                let permit = self.permit()?;
                let result = smtp.send(message).await;
                self.settle(
                    permit,
                    result
                        .as_ref()
                        .err()
                        .map(|e| (e.is_permanent(), e.to_string())),
                )
            }
        }
    }
}
