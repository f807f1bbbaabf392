//! What each kind of job does. Every effect checks, before acting, whether a
//! previous run of the same job did it already (see `coop_mechanisms::jobs`).
//!
//! Jobs read the primary: a job may run a moment after the commit that queued
//! it, before any replica has replayed that commit.
//!
//! Effects are idempotent by the job's key: calendar entries and payment
//! results are written with the key (or the payment id, which the provider also
//! gets as its idempotency key), and each email's send is recorded in
//! `job_effects` right after the SMTP server accepted it. One window remains:
//! a worker that dies after the server's `250 OK` and before that record
//! commits will send the email again when the job is rerun. The Message-ID is
//! derived from the job key, so the duplicate is recognisably the same message.

use std::path::Path;
use std::time::Duration;

use coop_domain::{PaymentState, token};
use coop_mechanisms::cache::{Cache, CacheKey};
use coop_mechanisms::jobs::{JobRunner, Outcome};
use coop_mechanisms::providers::ProviderSettings;
use coop_mechanisms::providers::mail::{Email, Mailer};
use coop_mechanisms::providers::payments::{
    Charge, ChargeError, ChargeResult, PaymentProvider, Refund,
};
use coop_mechanisms::store::calendar::NewEvent;
use coop_mechanisms::store::jobs::{EffectRecorder, JobRow, now_ms};
use coop_mechanisms::store::{self, Db};
use lettre::message::Mailbox;
use uuid::Uuid;

use coop_mechanisms::objects::{ObjectError, Objects};
use coop_mechanisms::store::documents::Viewer;

use super::{
    AnnouncementEmailJob, DeletionJob, DocumentJob, EmailChangeJob, ExportJob, FamilyJob,
    FanOutJob, Kind, ObjectsJob, PaymentJob, PromotionJob, RefundJob, UserJob,
};
use crate::AccountSettings;

/// How long a password reset link works.
const RESET_TTL: Duration = Duration::from_secs(3600);

/// How long an email change's confirmation link works.
const EMAIL_CHANGE_TTL: Duration = Duration::from_secs(86_400);

/// How long a founder's confirmation link works.
const VERIFICATION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Recipients found per fan-out job: a few hundred rows and jobs per commit.
const FAN_OUT_BATCH: u32 = 500;

/// Rows removed per batch of a co-op's deletion: each batch is one short
/// transaction (see `store::deletion`).
const DELETION_BATCH: u32 = 500;

/// Everything jobs need from the outside world.
pub struct Effects {
    pub db: Db,
    pub mailer: Mailer,
    pub payments: Option<PaymentProvider>,
    /// Where documents' bytes are (thumbnails, deletions, sweeps).
    objects: Objects,
    /// Where jobs that delete cached rows (a co-op's deletion) drop them:
    /// the application's cache in `coop serve`; in `coop worker`, Redis when
    /// COOP_REDIS_URL is set (which tells every instance), else nothing.
    cache: Cache,
    public_url: String,
    invite_ttl: Duration,
    export_ttl: Duration,
    deletion_grace: Duration,
    message_id_domain: String,
}

impl Effects {
    /// `bound`: the HTTP address, the default for links when COOP_PUBLIC_URL
    /// is unset; `data_dir`: where the outbox goes without SMTP.
    pub fn new(
        providers: &ProviderSettings,
        accounts: &AccountSettings,
        data_dir: &Path,
        db: Db,
        objects: Objects,
        bound: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let public_url = accounts
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let message_id_domain = providers
            .mail_from
            .parse::<Mailbox>()
            .map(|m| m.email.domain().to_owned())
            .unwrap_or_else(|_| "coop.localhost".into());
        Ok(Self {
            db,
            mailer: Mailer::new(providers, data_dir)?,
            payments: PaymentProvider::new(providers)?,
            objects,
            cache: Cache::disabled(),
            public_url,
            invite_ttl: accounts.invite_ttl,
            export_ttl: accounts.export_ttl,
            deletion_grace: accounts.deletion_grace,
            message_id_domain,
        })
    }

    /// Jobs invalidate `cache` when they delete what it may hold.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = cache;
        self
    }

    async fn run_job(&self, job: &JobRow) -> Outcome {
        let Some(kind) = Kind::parse(&job.kind) else {
            return Outcome::Dead(format!("unknown job kind {:?}", job.kind));
        };
        let result = match kind {
            Kind::WelcomeEmail => match payload::<FamilyJob>(job) {
                Ok(p) => self.welcome_email(job, p.family_id).await,
                Err(dead) => Err(dead),
            },
            Kind::CoordinatorNotice => match payload::<FamilyJob>(job) {
                Ok(p) => self.coordinator_notice(job, p.family_id).await,
                Err(dead) => Err(dead),
            },
            Kind::CalendarEvents => match payload::<FamilyJob>(job) {
                Ok(p) => self.calendar_events(job, p.family_id).await,
                Err(dead) => Err(dead),
            },
            Kind::ChargePayment => match payload::<PaymentJob>(job) {
                Ok(p) => self.charge_payment(p.payment_id).await,
                Err(dead) => Err(dead),
            },
            Kind::SeatPromotion => match payload::<PromotionJob>(job) {
                Ok(p) => self.seat_promotion(job, p.enrollment_id).await,
                Err(dead) => Err(dead),
            },
            Kind::RefundPayment => match payload::<RefundJob>(job) {
                Ok(p) => self.refund_payment(p.refund_id).await,
                Err(dead) => Err(dead),
            },
            Kind::AnnouncementFanOut => match payload::<FanOutJob>(job) {
                Ok(p) => {
                    self.announcement_fan_out(job, p.announcement_id, p.after)
                        .await
                }
                Err(dead) => Err(dead),
            },
            Kind::AnnouncementEmail => match payload::<AnnouncementEmailJob>(job) {
                Ok(p) => {
                    self.announcement_email(job, p.announcement_id, p.family_id)
                        .await
                }
                Err(dead) => Err(dead),
            },
            Kind::PasswordResetEmail => match payload::<UserJob>(job) {
                Ok(p) => self.password_reset_email(job, p.user_id).await,
                Err(dead) => Err(dead),
            },
            Kind::EmailChangeConfirmation => match payload::<EmailChangeJob>(job) {
                Ok(p) => {
                    self.email_change_confirmation(job, p.user_id, &p.new_email)
                        .await
                }
                Err(dead) => Err(dead),
            },
            Kind::SignupVerification => match payload::<UserJob>(job) {
                Ok(p) => self.signup_verification(job, p.user_id).await,
                Err(dead) => Err(dead),
            },
            Kind::AccountExistsNotice => match payload::<UserJob>(job) {
                Ok(p) => self.account_exists_notice(job, p.user_id).await,
                Err(dead) => Err(dead),
            },
            Kind::BuildExport => match payload::<ExportJob>(job) {
                Ok(p) => self.build_export(job, p.export_id).await,
                Err(dead) => Err(dead),
            },
            Kind::ExportReadyEmail => match payload::<ExportJob>(job) {
                Ok(p) => self.export_ready_email(job, p.export_id).await,
                Err(dead) => Err(dead),
            },
            Kind::ExpireExport => match payload::<ExportJob>(job) {
                Ok(p) => store::exports::expire(&self.db, p.export_id)
                    .await
                    .map(|()| Outcome::Done)
                    .map_err(Outcome::from),
                Err(dead) => Err(dead),
            },
            Kind::DeletionNotice => match payload::<DeletionJob>(job) {
                Ok(p) => self.deletion_notice(job, p.requested_at).await,
                Err(dead) => Err(dead),
            },
            Kind::DeleteCoop => match payload::<DeletionJob>(job) {
                Ok(p) => self.delete_coop(job, p.requested_at, p.batch).await,
                Err(dead) => Err(dead),
            },
            Kind::DocumentThumbnail => match payload::<DocumentJob>(job) {
                Ok(p) => self.document_thumbnail(job, p.document_id).await,
                Err(dead) => Err(dead),
            },
            Kind::DeleteDocumentObjects => match payload::<ObjectsJob>(job) {
                Ok(p) => self.discard_all(&p.keys).await.map(|()| Outcome::Done),
                Err(dead) => Err(dead),
            },
            Kind::SweepUpload => match payload::<ObjectsJob>(job) {
                Ok(p) => self.sweep_upload(p.document_id, &p.keys).await,
                Err(dead) => Err(dead),
            },
        };
        result.unwrap_or_else(|outcome| outcome)
    }

    /// The co-op's name for an email, or "your co-op" if it is gone.
    async fn coop_name(&self, coop_id: Uuid) -> Result<String, Outcome> {
        Ok(store::coops::name(&self.db, coop_id)
            .await?
            .unwrap_or_else(|| "your co-op".into()))
    }

    /// The founder's confirmation link, valid for a week. Anyone can type an
    /// address into the sign-up form, so this email carries none of the
    /// sign-up's text (not the co-op's name, not the founder's): it cannot be
    /// used to send words of one's own to someone else's inbox.
    async fn signup_verification(&self, job: &JobRow, user_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(user) = store::accounts::user(&self.db, user_id).await? else {
            // The unconfirmed co-op was removed: nothing to confirm.
            return Ok(Outcome::Done);
        };
        if user.coop_verified {
            return Ok(Outcome::Done);
        }
        let token = token::generate();
        let expires_at = now_ms() + VERIFICATION_TTL.as_millis() as i64;
        store::coops::insert_signup_verification(
            &self.db,
            &token::hash(&token),
            job.coop_id,
            user_id,
            expires_at,
        )
        .await?;
        let link = format!("{}/verify-email#token={token}", self.public_url);
        let body = format!(
            "Hello,\n\n\
             someone (we hope you) started a co-op on Coop with this address ({email}). \
             Confirm that it is yours here:\n\n{link}\n\n\
             Until you do, the co-op works but sends no email to anyone else. The link \
             works for seven days. Your confirmation code, should the link not open: \
             {token}\n\n\
             If it was not you, ignore this email: nothing will be sent in your name, \
             and the address stays free for you.\n",
            email = user.email,
        );
        self.send_once(
            &job.key,
            Email {
                to: mailbox("", &user.email)?,
                subject: "Confirm your email to start your co-op".into(),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// Tells an account's owner that someone tried to start a co-op with
    /// its address; the sign-up answered as if the address were new.
    async fn account_exists_notice(&self, job: &JobRow, user_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(user) = store::accounts::user(&self.db, user_id).await? else {
            return Ok(Outcome::Done);
        };
        let url = &self.public_url;
        let body = format!(
            "Hello,\n\n\
             someone (we hope you) tried to start a co-op on Coop with this address \
             ({email}), which already has an account, so no co-op was started.\n\n\
             To sign in: {url}/sign-in\n\
             Forgot the password? Choose a new one: {url}/forgot-password\n\n\
             If it was not you, ignore this email: nothing changed.\n",
            email = user.email,
        );
        self.send_once(
            &job.key,
            Email {
                to: mailbox("", &user.email)?,
                subject: "You already have a Coop account".into(),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// A single-use link to the new address that confirms an email change,
    /// valid for a day: only someone who reads that inbox can make it the
    /// account's address.
    async fn email_change_confirmation(
        &self,
        job: &JobRow,
        user_id: Uuid,
        new_email: &str,
    ) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(user) = store::accounts::user(&self.db, user_id).await? else {
            return Ok(Outcome::Done);
        };
        let coop = self.coop_name(job.coop_id).await?;
        let token = token::generate();
        let expires_at = now_ms() + EMAIL_CHANGE_TTL.as_millis() as i64;
        store::accounts::insert_email_change(
            &self.db,
            &token::hash(&token),
            user_id,
            new_email,
            expires_at,
        )
        .await?;
        let link = format!("{}/confirm-email#token={token}", self.public_url);
        let body = format!(
            "Hello,\n\n\
             the {coop} account of {old} asked to use this address ({new_email}) from now \
             on. Confirm it here:\n\n{link}\n\n\
             The link works once and for one day. Your confirmation code, should the \
             link not open: {token}\n\n\
             If you did not ask, ignore this email: nothing changes.\n",
            old = user.email,
        );
        self.send_once(
            &job.key,
            Email {
                to: mailbox("", new_email)?,
                subject: format!("Confirm your new email for {coop}"),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// A single-use link to choose a new password, valid for an hour. Like
    /// the welcome email, the token is made when the email is, so it is
    /// never stored anywhere but in its hash.
    async fn password_reset_email(&self, job: &JobRow, user_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(user) = store::accounts::user(&self.db, user_id).await? else {
            // The account is gone: nobody to send it to.
            return Ok(Outcome::Done);
        };
        let coop = self.coop_name(job.coop_id).await?;
        let token = token::generate();
        let expires_at = now_ms() + RESET_TTL.as_millis() as i64;
        store::accounts::insert_reset(&self.db, &token::hash(&token), user_id, expires_at).await?;
        let link = format!("{}/reset-password#token={token}", self.public_url);
        let body = format!(
            "Hello,\n\n\
             someone (we hope you) asked to reset the password of your {coop} account \
             ({email}). Choose a new password here:\n\n{link}\n\n\
             The link works once and for one hour. Your reset code, should the link \
             not open: {token}\n\n\
             If you did not ask, ignore this email: your password stays as it is.\n",
            email = user.email,
        );
        let to = mailbox("", &user.email)?;
        self.send_once(
            &job.key,
            Email {
                to,
                subject: format!("Reset your {coop} password"),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// The welcome email with a fresh single-use invite link. A rerun before
    /// the send makes a new invite (the unsent one is never seen by anyone).
    async fn welcome_email(&self, job: &JobRow, family_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(family) = store::families::get(&self.db, job.coop_id, family_id).await? else {
            // Removed before its welcome: nobody to welcome.
            return Ok(Outcome::Done);
        };
        if store::deletion::get(&self.db, job.coop_id).await?.is_some() {
            // The co-op is to be deleted: no new invites go out (a
            // coordinator who cancels the deletion can send it again).
            return Ok(Outcome::Done);
        }
        let coop = self.coop_name(job.coop_id).await?;
        let token = token::generate();
        let expires_at = now_ms() + self.invite_ttl.as_millis() as i64;
        store::invites::insert(
            &self.db,
            &token::hash(&token),
            job.coop_id,
            family_id,
            expires_at,
        )
        .await?;
        let days = self.invite_ttl.as_secs().div_ceil(86_400);
        // In the fragment, which browsers never send: the token stays out of
        // access logs, proxies and Referer headers.
        let link = format!("{}/accept-invite#token={token}", self.public_url);
        let body = format!(
            "Hello {name},\n\n\
             welcome to {coop}! You are enrolled as of {date}.\n\n\
             Create your family's account (choose a password) here:\n\n{link}\n\n\
             The link works once and for {days} days. Your invite code, should \
             the link not open: {token}\n\n\
             See you soon,\n{coop}\n",
            name = family.family_name,
            date = family.enrollment_date,
        );
        let to = mailbox(&family.family_name, &family.email)?;
        self.send_once(
            &job.key,
            Email {
                to,
                subject: format!("Welcome to {coop}"),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// One email to each coordinator; each send is recorded on its own, so a
    /// rerun after a partial failure mails only those not yet mailed.
    async fn coordinator_notice(&self, job: &JobRow, family_id: Uuid) -> Result<Outcome, Outcome> {
        let Some(family) = store::families::get(&self.db, job.coop_id, family_id).await? else {
            return Ok(Outcome::Done);
        };
        for (user_id, email, name) in store::coops::coordinators(&self.db, job.coop_id).await? {
            let key = format!("{}.{user_id}", job.key);
            if store::jobs::effect_done(&self.db, &key).await? {
                continue;
            }
            let body = format!(
                "Hello {name},\n\n\
                 a new family enrolled in your co-op:\n\n\
                 Family: {family_name}\nEmail: {email}\nEnrolled: {date}\n\n\
                 They have been sent a welcome email with an invite to create their account.\n",
                family_name = family.family_name,
                email = family.email,
                date = family.enrollment_date,
            );
            let email = Email {
                to: mailbox(&name, &email)?,
                subject: format!("New family enrolled: {}", family.family_name),
                body,
                message_id: self.message_id(&key),
            };
            self.send_once(&key, email).await?;
        }
        Ok(Outcome::Done)
    }

    /// The co-op's standard entries for a new family. Keys make a rerun a no-op.
    async fn calendar_events(&self, job: &JobRow, family_id: Uuid) -> Result<Outcome, Outcome> {
        let Some(family) = store::families::get(&self.db, job.coop_id, family_id).await? else {
            return Ok(Outcome::Done);
        };
        let coop = store::coops::name(&self.db, job.coop_id)
            .await?
            .unwrap_or_else(|| "the co-op".into());
        let start = family.enrollment_date;
        let entries = [
            (
                "enrollment",
                0,
                format!("Enrolled in {coop}"),
                "Your family's first day as a member.",
            ),
            (
                "orientation",
                7,
                "New family orientation".to_owned(),
                "Meet the coordinators and other families; bring questions.",
            ),
            (
                "check-in",
                30,
                "30-day check-in with a coordinator".to_owned(),
                "A short conversation about how the first month went.",
            ),
        ];
        let events: Vec<NewEvent> = entries
            .into_iter()
            .map(|(slug, days, summary, description)| NewEvent {
                key: format!("{}.{slug}", job.key),
                summary,
                description: description.to_owned(),
                starts_on: start.saturating_add(time::Duration::days(days)),
            })
            .collect();
        store::calendar::insert_all(&self.db, job.coop_id, family_id, &events).await?;
        Ok(Outcome::Done)
    }

    async fn charge_payment(&self, payment_id: Uuid) -> Result<Outcome, Outcome> {
        let Some(payment) = store::payments::get_by_id(&self.db, payment_id).await? else {
            return Ok(Outcome::Done);
        };
        if payment.state != PaymentState::Pending {
            return Ok(Outcome::Done);
        }
        let Some(provider) = &self.payments else {
            return Ok(Outcome::Retry(
                "no payment provider is configured on this worker (COOP_PAYMENTS_URL)".into(),
            ));
        };
        let charge = Charge {
            payment_id,
            amount_cents: payment.amount_cents,
            currency: &payment.currency,
            description: &payment.description,
        };
        match provider.charge(&charge).await {
            Ok(ChargeResult::Succeeded { charge_id }) => {
                store::payments::settle(&self.db, payment_id, true, Some(&charge_id), None).await?;
                Ok(Outcome::Done)
            }
            Ok(ChargeResult::Declined { charge_id, reason }) => {
                store::payments::settle(
                    &self.db,
                    payment_id,
                    false,
                    charge_id.as_deref(),
                    Some(&reason),
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(ChargeError::Open { retry_at }) => Ok(Outcome::Deferred {
                until: retry_at,
                reason: "the payments circuit breaker is open".into(),
            }),
            Err(ChargeError::Transient(message)) => Ok(Outcome::Retry(message)),
            Err(ChargeError::Permanent(message)) => {
                store::payments::settle(&self.db, payment_id, false, None, Some(&message)).await?;
                Ok(Outcome::Done)
            }
        }
    }

    /// "A seat opened": the family of a waitlisted child that got one.
    async fn seat_promotion(&self, job: &JobRow, enrollment_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(found) = store::enrollments::detail(&self.db, enrollment_id).await? else {
            return Ok(Outcome::Done);
        };
        let coop = self.coop_name(found.coop_id).await?;
        let body = format!(
            "Hello {family},\n\n\
             good news: a seat opened in {class}, and {child} has it. {child} was on the \
             waitlist and is now enrolled.\n\n\
             If {child} no longer needs the seat, drop the class so the next child on the \
             waitlist gets it.\n\n{coop}\n",
            family = found.family_name,
            class = found.class_title,
            child = found.first_name,
        );
        let email = Email {
            to: mailbox(&found.family_name, &found.family_email)?,
            subject: format!("{} is enrolled in {}", found.first_name, found.class_title),
            body,
            message_id: self.message_id(&job.key),
        };
        self.send_once(&job.key, email).await?;
        Ok(Outcome::Done)
    }

    /// Returns money through the provider (idempotent by the refund's id).
    async fn refund_payment(&self, refund_id: Uuid) -> Result<Outcome, Outcome> {
        let Some(refund) = store::ledger::refund(&self.db, refund_id).await? else {
            return Ok(Outcome::Done);
        };
        if refund.state != "pending" {
            return Ok(Outcome::Done);
        }
        let Some(provider) = &self.payments else {
            return Ok(Outcome::Retry(
                "no payment provider is configured on this worker (COOP_PAYMENTS_URL)".into(),
            ));
        };
        let request = Refund {
            refund_id,
            payment_id: refund.payment_id,
            charge_id: refund.provider_charge_id.as_deref(),
            amount_cents: refund.amount_cents,
            currency: &refund.currency,
        };
        match provider.refund(&request).await {
            Ok(ChargeResult::Succeeded { charge_id }) => {
                store::ledger::settle_refund(&self.db, refund_id, true, Some(&charge_id), None)
                    .await?;
                Ok(Outcome::Done)
            }
            Ok(ChargeResult::Declined { charge_id, reason }) => {
                store::ledger::settle_refund(
                    &self.db,
                    refund_id,
                    false,
                    charge_id.as_deref(),
                    Some(&reason),
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(ChargeError::Open { retry_at }) => Ok(Outcome::Deferred {
                until: retry_at,
                reason: "the payments circuit breaker is open".into(),
            }),
            Err(ChargeError::Transient(message)) => Ok(Outcome::Retry(message)),
            Err(ChargeError::Permanent(message)) => {
                store::ledger::settle_refund(&self.db, refund_id, false, None, Some(&message))
                    .await?;
                Ok(Outcome::Done)
            }
        }
    }

    /// One batch of an announcement's recipients (see `store::announcements`).
    async fn announcement_fan_out(
        &self,
        job: &JobRow,
        announcement_id: Uuid,
        after: Option<Uuid>,
    ) -> Result<Outcome, Outcome> {
        let attempts = u32::try_from(job.max_attempts).unwrap_or(1);
        store::announcements::fan_out_batch(
            &self.db,
            announcement_id,
            after,
            FAN_OUT_BATCH,
            &|coop_id, family_id| {
                super::announcement_email_job(coop_id, announcement_id, family_id, attempts)
            },
            &|coop_id, last| super::fan_out_job(coop_id, announcement_id, Some(last), attempts),
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// One announcement email; its delivery is marked sent, or failed when the
    /// last attempt fails.
    async fn announcement_email(
        &self,
        job: &JobRow,
        announcement_id: Uuid,
        family_id: Uuid,
    ) -> Result<Outcome, Outcome> {
        let Some(delivery) =
            store::announcements::delivery(&self.db, announcement_id, family_id).await?
        else {
            return Ok(Outcome::Done);
        };
        if !store::jobs::effect_done(&self.db, &job.key).await? {
            let email = Email {
                to: mailbox(&delivery.family_name, &delivery.email)?,
                subject: format!("{}: {}", delivery.coop_name, delivery.subject),
                body: format!("{}\n\n— {}\n", delivery.body, delivery.coop_name),
                message_id: self.message_id(&job.key),
            };
            let last_attempt = job.attempts >= job.max_attempts;
            match self.send_once(&job.key, email).await {
                Ok(()) => {}
                Err(outcome @ (Outcome::Dead(_) | Outcome::Retry(_))) => {
                    if matches!(outcome, Outcome::Dead(_)) || last_attempt {
                        store::announcements::mark(&self.db, announcement_id, family_id, false)
                            .await?;
                    }
                    return Err(outcome);
                }
                Err(other) => return Err(other),
            }
        }
        if delivery.state != "sent" {
            store::announcements::mark(&self.db, announcement_id, family_id, true).await?;
        }
        Ok(Outcome::Done)
    }

    /// Builds the co-op's export archive and stores it, with the email that
    /// says so and the job that deletes it when its link expires.
    async fn build_export(&self, job: &JobRow, export_id: Uuid) -> Result<Outcome, Outcome> {
        let Some(export) = store::exports::get(&self.db, job.coop_id, export_id).await? else {
            return Ok(Outcome::Done);
        };
        if export.state != "queued" {
            return Ok(Outcome::Done);
        }
        match self.export_archive(job.coop_id).await {
            Ok(archive) => {
                let ready_at = now_ms();
                let expires_at = ready_at.saturating_add(self.export_ttl.as_millis() as i64);
                let attempts = u32::try_from(job.max_attempts).unwrap_or(1);
                let then = [
                    super::export_ready_job(job.coop_id, export_id, attempts),
                    super::expire_export_job(job.coop_id, export_id, expires_at, attempts),
                ];
                store::exports::finish(&self.db, export_id, &archive, ready_at, expires_at, &then)
                    .await?;
                Ok(Outcome::Done)
            }
            Err(outcome) => {
                // The last attempt: the export is failed, and the co-op may
                // ask for another (only one may be in progress).
                if matches!(outcome, Outcome::Dead(_)) || job.attempts >= job.max_attempts {
                    store::exports::fail(&self.db, export_id).await?;
                }
                Err(outcome)
            }
        }
    }

    async fn export_archive(&self, coop_id: Uuid) -> Result<Vec<u8>, Outcome> {
        let coop_name = self.coop_name(coop_id).await?;
        let tables = store::exports::read_all(&self.db, coop_id).await?;
        let grace_days = self.deletion_grace.as_secs().div_ceil(86_400);
        // Compressing is CPU work: off the runtime's threads.
        tokio::task::spawn_blocking(move || {
            let exported_at = crate::archive::rfc3339(coop_domain::clock::now());
            let rows = store::exports::TABLES
                .iter()
                .zip(tables)
                .map(|(table, rows)| crate::archive::TableRows { table, rows })
                .collect::<Vec<_>>();
            crate::archive::build(
                &crate::archive::About {
                    coop_id,
                    coop_name: &coop_name,
                    exported_at: &exported_at,
                    deletion_grace_days: grace_days,
                },
                &rows,
            )
        })
        .await
        .map_err(|e| Outcome::Retry(format!("building the archive stopped: {e}")))?
        .map_err(|e| Outcome::Retry(format!("building the archive failed: {e:#}")))
    }

    /// "Your export is ready", with its link and expiry, to the coordinator
    /// who asked.
    async fn export_ready_email(&self, job: &JobRow, export_id: Uuid) -> Result<Outcome, Outcome> {
        if store::jobs::effect_done(&self.db, &job.key).await? {
            return Ok(Outcome::Done);
        }
        let Some(notice) = store::exports::ready_notice(&self.db, export_id).await? else {
            return Ok(Outcome::Done);
        };
        if notice.state != "ready" {
            return Ok(Outcome::Done);
        }
        let expires = notice
            .expires_at
            .map(|ms| crate::archive::rfc3339(coop_domain::clock::from_unix_ms(ms)))
            .unwrap_or_default();
        let link = format!("{}/api/v1/exports/{export_id}/archive", self.public_url);
        let coop = &notice.coop_name;
        let body = format!(
            "Hello {name},\n\n\
             the export of {coop}'s data that you asked for is ready: one zip file with \
             every family, child, semester, class, enrollment, payment and announcement, \
             as CSV and JSON, and a README that explains each file.\n\n\
             Download it here (signed in to Coop as a coordinator of {coop}):\n\n{link}\n\n\
             The link works until {expires} (UTC). Then the file is deleted; you can ask \
             for a new export at any time.\n",
            name = notice.name,
        );
        self.send_once(
            &job.key,
            Email {
                to: mailbox(&notice.name, &notice.email)?,
                subject: format!("Your export of {coop} is ready"),
                body,
                message_id: self.message_id(&job.key),
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// Tells each coordinator that the co-op's deletion is scheduled, and
    /// how to cancel it; each send is recorded on its own, like the
    /// coordinators' notice of a new family.
    async fn deletion_notice(&self, job: &JobRow, requested_at: i64) -> Result<Outcome, Outcome> {
        let Some(deletion) = store::deletion::get(&self.db, job.coop_id).await? else {
            return Ok(Outcome::Done);
        };
        if deletion.requested_at != requested_at {
            return Ok(Outcome::Done);
        }
        let coop = self.coop_name(job.coop_id).await?;
        let when = crate::archive::rfc3339(coop_domain::clock::from_unix_ms(deletion.deletes_at));
        let url = &self.public_url;
        for (user_id, email, name) in store::coops::coordinators(&self.db, job.coop_id).await? {
            let key = format!("{}.{user_id}", job.key);
            if store::jobs::effect_done(&self.db, &key).await? {
                continue;
            }
            let body = format!(
                "Hello {name},\n\n\
                 a coordinator asked Coop to delete {coop}. On {when} (UTC), everything of \
                 the co-op will be deleted: its accounts, families, children, semesters, \
                 classes, enrollments, payments, announcements and documents. Nobody will be \
                 able to sign in to it after that.\n\n\
                 Until then the co-op works as before. To keep its data, download an \
                 export first. To stop the deletion, cancel it on the co-op's settings: \
                 {url}/coop\n"
            );
            let email = Email {
                to: mailbox(&name, &email)?,
                subject: format!("{coop} will be deleted on {}", &when[..10.min(when.len())]),
                body,
                message_id: self.message_id(&key),
            };
            self.send_once(&key, email).await?;
        }
        Ok(Outcome::Done)
    }

    /// One batch of the co-op's deletion, once its grace period is over; it
    /// queues the next batch in its own commit, and the last one removes the
    /// co-op's row and, with it, this job's own.
    async fn delete_coop(
        &self,
        job: &JobRow,
        requested_at: i64,
        batch: u64,
    ) -> Result<Outcome, Outcome> {
        let coop_id = job.coop_id;
        if !store::deletion::begin(&self.db, coop_id, requested_at).await? {
            // Cancelled (or cancelled and asked for again: that schedule has
            // a job of its own).
            return Ok(Outcome::Done);
        }
        // Documents before any row: their objects must go while rows still
        // name them.
        self.delete_documents_of(coop_id).await?;
        let attempts = u32::try_from(job.max_attempts).unwrap_or(1);
        let next = super::delete_coop_job(coop_id, requested_at, batch + 1, now_ms(), attempts);
        let removed =
            store::deletion::delete_batch(&self.db, coop_id, DELETION_BATCH, &next).await?;
        let keys = removed_keys(coop_id, &removed);
        self.cache.invalidate(&keys, None).await;
        tracing::info!(
            coop = %coop_id,
            batch,
            table = removed.table.unwrap_or("coops"),
            rows = removed.rows,
            "deleting a co-op"
        );
        Ok(match removed.table {
            Some(_) => Outcome::Done,
            None => Outcome::Removed,
        })
    }

    /// A PNG thumbnail of an image document (PNG or JPEG), recorded on its
    /// row. An image too large or not decodable gets none (that is no
    /// failure: the list shows the document without one).
    async fn document_thumbnail(
        &self,
        job: &JobRow,
        document_id: Uuid,
    ) -> Result<Outcome, Outcome> {
        let Some(row) =
            store::documents::get(&self.db, job.coop_id, document_id, Viewer::Coordinator).await?
        else {
            return Ok(Outcome::Done);
        };
        if row.thumbnail_key.is_some() {
            return Ok(Outcome::Done);
        }
        let Some(source) = self
            .objects
            .get_small(&row.object_key, crate::thumbnails::MAX_SOURCE_BYTES)
            .await
            .map_err(object_outcome)?
        else {
            metrics::counter!("document_thumbnails_total", "result" => "too_large").increment(1);
            return Ok(Outcome::Done);
        };
        let made = tokio::task::spawn_blocking(move || crate::thumbnails::png(&source))
            .await
            .map_err(|e| Outcome::Retry(format!("making the thumbnail stopped: {e}")))?;
        let png = match made {
            Ok(png) => png,
            Err(err) => {
                tracing::info!(document = %document_id, error = %err, "no thumbnail: the image does not decode");
                metrics::counter!("document_thumbnails_total", "result" => "undecodable")
                    .increment(1);
                return Ok(Outcome::Done);
            }
        };
        let key = crate::documents::thumbnail_key(job.coop_id, document_id);
        self.objects
            .put(&key, png.into())
            .await
            .map_err(object_outcome)?;
        if !store::documents::set_thumbnail(&self.db, document_id, &key).await? {
            // Deleted meanwhile: its deletion job may have run already.
            self.objects.discard(&key).await.map_err(object_outcome)?;
        }
        metrics::counter!("document_thumbnails_total", "result" => "made").increment(1);
        Ok(Outcome::Done)
    }

    /// Removes objects (absent ones are fine: a rerun finds them gone).
    async fn discard_all(&self, keys: &[String]) -> Result<(), Outcome> {
        for key in keys {
            self.objects.discard(key).await.map_err(object_outcome)?;
        }
        Ok(())
    }

    /// An upload's sweep: nothing to do if its row was committed; else the
    /// instance died (or gave up) between storing and committing, and the
    /// objects go.
    async fn sweep_upload(&self, document_id: Uuid, keys: &[String]) -> Result<Outcome, Outcome> {
        if store::documents::exists(&self.db, document_id).await? {
            metrics::counter!("document_sweeps_total", "result" => "committed").increment(1);
            return Ok(Outcome::Done);
        }
        let mut found = false;
        for key in keys {
            found |= self.objects.exists(key).await.map_err(object_outcome)?;
        }
        self.discard_all(keys).await?;
        let result = if found {
            "orphan_removed"
        } else {
            "nothing_stored"
        };
        if found {
            tracing::info!(document = %document_id, "removed the object of an upload that never committed");
        }
        metrics::counter!("document_sweeps_total", "result" => result).increment(1);
        Ok(Outcome::Done)
    }

    /// Every document of a co-op being deleted: objects first, then rows,
    /// a batch at a time (a rerun finds the removed objects gone).
    async fn delete_documents_of(&self, coop_id: Uuid) -> Result<(), Outcome> {
        loop {
            let batch = store::documents::of_coop(&self.db, coop_id, DELETION_BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            let mut ids = Vec::with_capacity(batch.len());
            for (id, key, thumbnail) in batch {
                self.objects.discard(&key).await.map_err(object_outcome)?;
                let thumbnail =
                    thumbnail.unwrap_or_else(|| crate::documents::thumbnail_key(coop_id, id));
                self.objects
                    .discard(&thumbnail)
                    .await
                    .map_err(object_outcome)?;
                ids.push(id);
            }
            store::documents::remove(&self.db, coop_id, &ids).await?;
        }
    }

    /// Sends `email` and records `key` as done. The documented window: a crash
    /// after the server accepted the email and before the record commits sends
    /// it again on the rerun. The connection for the record is taken before
    /// sending, so the window is one INSERT, not a wait for the pool as well.
    async fn send_once(&self, key: &str, email: Email) -> Result<(), Outcome> {
        let recorder = EffectRecorder::take(&self.db).await?;
        let sending = std::time::Instant::now();
        self.mailer.send(email).await?;
        let sent = std::time::Instant::now();
        recorder.record(key).await?;
        metrics::histogram!("email_send_seconds").record((sent - sending).as_secs_f64());
        // How long a crash would have repeated this email.
        metrics::histogram!("email_duplicate_window_seconds").record(sent.elapsed().as_secs_f64());
        Ok(())
    }

    fn message_id(&self, key: &str) -> String {
        format!("<{key}@{}>", self.message_id_domain)
    }
}

/// The cache entries of what a deletion batch removed: the sessions it
/// ended (nobody of the co-op stays signed in on any instance) and the
/// cached rows, which nobody can read any more but which should not linger.
fn removed_keys(coop_id: Uuid, removed: &store::deletion::Removed) -> Vec<CacheKey> {
    let mut keys: Vec<CacheKey> = removed
        .sessions
        .iter()
        .map(|hash| coop_mechanisms::sessions::cache_key(hash))
        .collect();
    for &id in &removed.ids {
        match removed.table {
            Some("families") => keys.extend([
                crate::families::key(coop_id, id),
                crate::families::children_key(coop_id, id),
                crate::families::enrollments_key(coop_id, id),
            ]),
            Some("semesters") => keys.extend([
                crate::semesters::key(coop_id, id),
                crate::classes::catalog_key(coop_id, id),
            ]),
            Some("classes") => keys.extend([
                crate::classes::key(coop_id, id),
                crate::classes::waitlist_key(coop_id, id),
            ]),
            _ => {}
        }
    }
    if removed.table == Some("semesters") {
        keys.push(crate::semesters::list_key(coop_id));
    }
    keys
}

/// A store that failed is retried later; one whose breaker is open, when
/// it may close (without counting an attempt).
fn object_outcome(err: ObjectError) -> Outcome {
    match err {
        ObjectError::NotFound => Outcome::Retry("the object is missing".into()),
        ObjectError::Open { retry_after } => Outcome::Deferred {
            until: std::time::Instant::now() + retry_after,
            reason: "the object store's circuit breaker is open".into(),
        },
        ObjectError::Unavailable { reason, .. } => {
            Outcome::Retry(format!("the file store: {reason}"))
        }
    }
}

fn payload<T: serde::de::DeserializeOwned>(job: &JobRow) -> Result<T, Outcome> {
    serde_json::from_str(&job.payload)
        .map_err(|e| Outcome::Dead(format!("the job's payload is unreadable: {e}")))
}

fn mailbox(name: &str, email: &str) -> Result<Mailbox, Outcome> {
    let address = email
        .parse()
        .map_err(|e| Outcome::Dead(format!("{email:?} is not a deliverable address: {e}")))?;
    let name = (!name.is_empty()).then(|| name.to_owned());
    Ok(Mailbox::new(name, address))
}

impl JobRunner for Effects {
    async fn run(&self, job: &JobRow) -> Outcome {
        self.run_job(job).await
    }
}
