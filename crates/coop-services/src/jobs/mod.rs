//! The job catalogue: what kinds of background work the co-op's writes cause,
//! their payloads, and ([`effects`]) what each does when a worker runs it.

pub mod effects;

use std::sync::Arc;

use coop_mechanisms::jobs::worker::{WorkerConfig, run_now};
use coop_mechanisms::store::Db;
use coop_mechanisms::store::jobs::{NewJob, now_ms};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use effects::Effects;

/// What a job does; stored as its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WelcomeEmail,
    CoordinatorNotice,
    CalendarEvents,
    ChargePayment,
    /// A waitlisted child got a seat: tell the family.
    SeatPromotion,
    /// Money back through the provider, for a drop after the family paid.
    RefundPayment,
    /// Find the next batch of an announcement's recipients.
    AnnouncementFanOut,
    /// One announcement email to one family.
    AnnouncementEmail,
    /// A single-use link to choose a new password.
    PasswordResetEmail,
    /// A single-use link, to the new address, that confirms an email change.
    EmailChangeConfirmation,
    /// A founder's link that confirms their email (and releases held jobs).
    SignupVerification,
    /// Someone tried to start a co-op with an address that has an account:
    /// tell its owner (the sign-up's answer does not say so).
    AccountExistsNotice,
    /// Build a co-op's export archive.
    BuildExport,
    /// "Your export is ready", to the coordinator who asked.
    ExportReadyEmail,
    /// Delete an export's archive when its link expires.
    ExpireExport,
    /// Tell the co-op's coordinators that its deletion is scheduled.
    DeletionNotice,
    /// One batch of a co-op's deletion (see `store::deletion`).
    DeleteCoop,
    /// A small PNG of an uploaded image, for lists.
    DocumentThumbnail,
    /// A deleted document's objects (its row is gone already).
    DeleteDocumentObjects,
    /// An upload's objects, unless its row was committed (queued before the
    /// upload's first byte; see `documents`).
    SweepUpload,
}

impl Kind {
    pub const ALL: [Kind; 20] = [
        Self::WelcomeEmail,
        Self::CoordinatorNotice,
        Self::CalendarEvents,
        Self::ChargePayment,
        Self::SeatPromotion,
        Self::RefundPayment,
        Self::AnnouncementFanOut,
        Self::AnnouncementEmail,
        Self::PasswordResetEmail,
        Self::EmailChangeConfirmation,
        Self::SignupVerification,
        Self::AccountExistsNotice,
        Self::BuildExport,
        Self::ExportReadyEmail,
        Self::ExpireExport,
        Self::DeletionNotice,
        Self::DeleteCoop,
        Self::DocumentThumbnail,
        Self::DeleteDocumentObjects,
        Self::SweepUpload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WelcomeEmail => "welcome_email",
            Self::CoordinatorNotice => "coordinator_notice",
            Self::CalendarEvents => "calendar_events",
            Self::ChargePayment => "charge_payment",
            Self::SeatPromotion => "seat_promotion",
            Self::RefundPayment => "refund_payment",
            Self::AnnouncementFanOut => "announcement_fan_out",
            Self::AnnouncementEmail => "announcement_email",
            Self::PasswordResetEmail => "password_reset_email",
            Self::EmailChangeConfirmation => "email_change_confirmation",
            Self::SignupVerification => "signup_verification",
            Self::AccountExistsNotice => "account_exists_notice",
            Self::BuildExport => "build_export",
            Self::ExportReadyEmail => "export_ready_email",
            Self::ExpireExport => "expire_export",
            Self::DeletionNotice => "deletion_notice",
            Self::DeleteCoop => "delete_coop",
            Self::DocumentThumbnail => "document_thumbnail",
            Self::DeleteDocumentObjects => "delete_document_objects",
            Self::SweepUpload => "sweep_upload",
        }
    }

    /// Whether the job waits for the co-op's founder to confirm their email:
    /// every email to someone else in the co-op's name. The founder's own
    /// links (confirmation, password, email change) never wait, and neither
    /// do payments and calendars, which email nobody.
    pub fn holdable(self) -> bool {
        matches!(
            self,
            Self::WelcomeEmail
                | Self::CoordinatorNotice
                | Self::SeatPromotion
                | Self::AnnouncementFanOut
                | Self::AnnouncementEmail
        )
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Every kind's name, for the queue's metrics.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.into_iter().map(Self::as_str).collect()
    }
}

/// The payload of the three enrollment jobs.
#[derive(Debug, Serialize, Deserialize)]
pub struct FamilyJob {
    pub family_id: Uuid,
}

/// The payload of a password reset email.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserJob {
    pub user_id: Uuid,
}

/// The payload of an email change's confirmation.
#[derive(Debug, Serialize, Deserialize)]
pub struct EmailChangeJob {
    pub user_id: Uuid,
    pub new_email: String,
}

/// The payload of a payment job.
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentJob {
    pub payment_id: Uuid,
}

/// A promotion's email: the enrollment that got the seat. Each promotion is
/// one job (keyed by a fresh id: a child promoted, dropped and promoted again
/// is told twice, once each time).
#[derive(Debug, Serialize, Deserialize)]
pub struct PromotionJob {
    pub enrollment_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RefundJob {
    pub refund_id: Uuid,
}

/// The next batch of an announcement's recipients: families after `after`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FanOutJob {
    pub announcement_id: Uuid,
    pub after: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AnnouncementEmailJob {
    pub announcement_id: Uuid,
    pub family_id: Uuid,
}

/// The payload of the three export jobs.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportJob {
    pub export_id: Uuid,
}

/// The payload of a deletion's jobs: which schedule (a deletion cancelled
/// and asked for again is a new one) and, for a batch, its number.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeletionJob {
    pub requested_at: i64,
    #[serde(default)]
    pub batch: u64,
}

/// The payload of a thumbnail job.
#[derive(Debug, Serialize, Deserialize)]
pub struct DocumentJob {
    pub document_id: Uuid,
}

/// The payload of the jobs that remove a document's objects: which
/// document (a sweep looks for its row) and the keys.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectsJob {
    pub document_id: Uuid,
    pub keys: Vec<String>,
}

pub fn thumbnail_job(coop_id: Uuid, document_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "document_id": document_id }).to_string();
    new_job(
        coop_id,
        Kind::DocumentThumbnail,
        document_id,
        payload,
        max_attempts,
    )
}

pub fn delete_objects_job(
    coop_id: Uuid,
    document_id: Uuid,
    keys: Vec<String>,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "document_id": document_id, "keys": keys }).to_string();
    new_job(
        coop_id,
        Kind::DeleteDocumentObjects,
        document_id,
        payload,
        max_attempts,
    )
}

/// Due at `run_at`, when no upload can still be running (see
/// `DocumentSettings::sweep_after`).
pub fn sweep_upload_job(
    coop_id: Uuid,
    document_id: Uuid,
    keys: Vec<String>,
    run_at: i64,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "document_id": document_id, "keys": keys }).to_string();
    NewJob {
        run_at,
        ..new_job(
            coop_id,
            Kind::SweepUpload,
            document_id,
            payload,
            max_attempts,
        )
    }
}

pub fn build_export_job(coop_id: Uuid, export_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "export_id": export_id }).to_string();
    new_job(coop_id, Kind::BuildExport, export_id, payload, max_attempts)
}

pub fn export_ready_job(coop_id: Uuid, export_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "export_id": export_id }).to_string();
    new_job(
        coop_id,
        Kind::ExportReadyEmail,
        export_id,
        payload,
        max_attempts,
    )
}

/// Runs when the export's link expires (`expires_at`, Unix milliseconds).
pub fn expire_export_job(
    coop_id: Uuid,
    export_id: Uuid,
    expires_at: i64,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "export_id": export_id }).to_string();
    NewJob {
        run_at: expires_at,
        ..new_job(
            coop_id,
            Kind::ExpireExport,
            export_id,
            payload,
            max_attempts,
        )
    }
}

pub fn deletion_notice_job(coop_id: Uuid, requested_at: i64, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "requested_at": requested_at }).to_string();
    keyed_job(
        coop_id,
        Kind::DeletionNotice,
        format!("{coop_id}.{requested_at}"),
        payload,
        max_attempts,
    )
}

/// Batch `batch` of the deletion scheduled at `requested_at`, due at `run_at`.
pub fn delete_coop_job(
    coop_id: Uuid,
    requested_at: i64,
    batch: u64,
    run_at: i64,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "requested_at": requested_at, "batch": batch }).to_string();
    NewJob {
        run_at,
        ..keyed_job(
            coop_id,
            Kind::DeleteCoop,
            format!("{coop_id}.{requested_at}.{batch}"),
            payload,
            max_attempts,
        )
    }
}

fn new_job(coop_id: Uuid, kind: Kind, subject: Uuid, payload: String, max_attempts: u32) -> NewJob {
    keyed_job(coop_id, kind, subject.to_string(), payload, max_attempts)
}

fn keyed_job(
    coop_id: Uuid,
    kind: Kind,
    subject: String,
    payload: String,
    max_attempts: u32,
) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        coop_id,
        kind: kind.as_str(),
        key: format!("{}.{subject}", kind.as_str()),
        payload,
        max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
        run_at: now_ms(),
        holdable: kind.holdable(),
    }
}

pub fn promotion_job(coop_id: Uuid, enrollment_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "enrollment_id": enrollment_id }).to_string();
    new_job(
        coop_id,
        Kind::SeatPromotion,
        Uuid::now_v7(),
        payload,
        max_attempts,
    )
}

pub fn refund_job(coop_id: Uuid, refund_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "refund_id": refund_id }).to_string();
    new_job(
        coop_id,
        Kind::RefundPayment,
        refund_id,
        payload,
        max_attempts,
    )
}

pub fn fan_out_job(
    coop_id: Uuid,
    announcement_id: Uuid,
    after: Option<Uuid>,
    max_attempts: u32,
) -> NewJob {
    let payload =
        serde_json::json!({ "announcement_id": announcement_id, "after": after }).to_string();
    let subject = match after {
        Some(after) => format!("{announcement_id}.{after}"),
        None => announcement_id.to_string(),
    };
    keyed_job(
        coop_id,
        Kind::AnnouncementFanOut,
        subject,
        payload,
        max_attempts,
    )
}

pub fn announcement_email_job(
    coop_id: Uuid,
    announcement_id: Uuid,
    family_id: Uuid,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "announcement_id": announcement_id, "family_id": family_id })
        .to_string();
    keyed_job(
        coop_id,
        Kind::AnnouncementEmail,
        format!("{announcement_id}.{family_id}"),
        payload,
        max_attempts,
    )
}

/// The jobs an enrollment causes: welcome email (with the invite), the
/// coordinators' notification and the family's calendar entries.
pub fn enrollment_jobs(coop_id: Uuid, family_id: Uuid, max_attempts: u32) -> Vec<NewJob> {
    let payload = serde_json::json!({ "family_id": family_id }).to_string();
    [
        Kind::WelcomeEmail,
        Kind::CoordinatorNotice,
        Kind::CalendarEvents,
    ]
    .into_iter()
    .map(|kind| new_job(coop_id, kind, family_id, payload.clone(), max_attempts))
    .collect()
}

/// A welcome email sent again, with a new invite (its key is new each time).
pub fn invite_again_job(coop_id: Uuid, family_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "family_id": family_id }).to_string();
    keyed_job(
        coop_id,
        Kind::WelcomeEmail,
        format!("{family_id}.{}", Uuid::now_v7()),
        payload,
        max_attempts,
    )
}

/// A password reset email (its key is new each time: every request sends
/// a link of its own).
pub fn password_reset_job(coop_id: Uuid, user_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "user_id": user_id }).to_string();
    keyed_job(
        coop_id,
        Kind::PasswordResetEmail,
        format!("{user_id}.{}", Uuid::now_v7()),
        payload,
        max_attempts,
    )
}

/// The confirmation of an email change, to the new address.
pub fn email_change_job(
    coop_id: Uuid,
    user_id: Uuid,
    new_email: &str,
    max_attempts: u32,
) -> NewJob {
    let payload = serde_json::json!({ "user_id": user_id, "new_email": new_email }).to_string();
    keyed_job(
        coop_id,
        Kind::EmailChangeConfirmation,
        format!("{user_id}.{}", Uuid::now_v7()),
        payload,
        max_attempts,
    )
}

/// The founder's confirmation link (a new key each time: a sign-up repeated
/// with the same address sends a new link).
pub fn signup_verification_job(coop_id: Uuid, user_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "user_id": user_id }).to_string();
    keyed_job(
        coop_id,
        Kind::SignupVerification,
        format!("{user_id}.{}", Uuid::now_v7()),
        payload,
        max_attempts,
    )
}

/// The notice to an existing account that someone tried to start a co-op
/// with its address.
pub fn account_exists_job(coop_id: Uuid, user_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "user_id": user_id }).to_string();
    keyed_job(
        coop_id,
        Kind::AccountExistsNotice,
        format!("{user_id}.{}", Uuid::now_v7()),
        payload,
        max_attempts,
    )
}

pub fn payment_job(coop_id: Uuid, payment_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "payment_id": payment_id }).to_string();
    new_job(
        coop_id,
        Kind::ChargePayment,
        payment_id,
        payload,
        max_attempts,
    )
}

/// The `COOP_JOBS_INLINE` benchmark variant: a write's jobs run before the
/// request is answered, as if there were no queue.
pub struct InlineJobs {
    db: Db,
    effects: Arc<Effects>,
    config: WorkerConfig,
}

impl InlineJobs {
    pub fn new(db: Db, effects: Arc<Effects>, config: WorkerConfig) -> Self {
        Self {
            db,
            effects,
            config,
        }
    }

    pub(crate) async fn run(self: &Arc<Self>, jobs: &[NewJob]) {
        // In a task of its own, so a client that hangs up does not cancel a
        // job halfway (e.g. between an email's send and its record).
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
        let inline = self.clone();
        let _ = tokio::spawn(async move {
            run_now(&inline.db, &*inline.effects, &inline.config, &ids).await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_makes_three_jobs_with_distinct_stable_keys() {
        let coop = Uuid::now_v7();
        let family = Uuid::now_v7();
        let jobs = enrollment_jobs(coop, family, 5);
        let keys: Vec<_> = jobs.iter().map(|j| j.key.clone()).collect();
        assert_eq!(
            keys,
            [
                format!("welcome_email.{family}"),
                format!("coordinator_notice.{family}"),
                format!("calendar_events.{family}"),
            ]
        );
        assert!(jobs.iter().all(|j| j.max_attempts == 5));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("nope"), None);
    }
}
