//! A co-op's exports: a coordinator asks, a job builds the archive (see
//! `archive` and `jobs::effects`) and emails them, and the archive can be
//! downloaded by the co-op's coordinators until it expires, when a job
//! deletes it. At most one export per co-op is in progress at a time (a
//! unique index, so it holds across instances).

use std::time::Duration;

use coop_mechanisms::data::Data;
use coop_mechanisms::store::exports::{self, ExportRow};
use coop_mechanisms::store::is_unique_violation;
use coop_mechanisms::store::jobs::now_ms;
use uuid::Uuid;

use crate::{Ctx, Error, Result, jobs};

/// An export as people see it: `state` is `expired` once `expires_at` has
/// passed, even before the job that deletes the archive has run.
pub type Export = ExportRow;

#[derive(Clone)]
pub struct Exports {
    data: Data,
    job_max_attempts: u32,
    ttl: Duration,
}

impl Exports {
    pub(crate) fn new(data: Data, job_max_attempts: u32, ttl: Duration) -> Self {
        Self {
            data,
            job_max_attempts,
            ttl,
        }
    }

    /// How long a built export can be downloaded (COOP_EXPORT_TTL).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Coordinators. Commits the queued export with the job that builds it.
    pub async fn request(&self, ctx: &Ctx) -> Result<Export> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let id = Uuid::now_v7();
        let build = jobs::build_export_job(coop_id, id, self.job_max_attempts);
        let primary = self.data.primary();
        match exports::create(primary, id, coop_id, ctx.caller.user_id, &build).await {
            Ok(()) => {}
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::conflict(
                    "export_in_progress",
                    "an export of this co-op is being built already; its email will say when \
                     it is ready (GET /api/v1/exports shows it), then you can ask for another",
                ));
            }
            Err(err) => return Err(err.into()),
        }
        self.data.committed(&ctx.read_after, &[]).await;
        exports::get(primary, coop_id, id)
            .await?
            .map(as_seen)
            .ok_or_else(not_found)
    }

    /// The co-op's exports, newest first (coordinators).
    pub async fn list(&self, ctx: &Ctx) -> Result<Vec<Export>> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let rows = self
            .data
            .read(&ctx.read_after, |db| async move {
                exports::list(&db, coop_id).await
            })
            .await?;
        Ok(rows.into_iter().map(as_seen).collect())
    }

    /// One export (coordinators).
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Export> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        self.data
            .read(&ctx.read_after, |db| async move {
                exports::get(&db, coop_id, id).await
            })
            .await?
            .map(as_seen)
            .ok_or_else(not_found)
    }

    /// The archive's bytes (coordinators), from the primary: the link in the
    /// email may be followed the moment the job committed.
    pub async fn archive(&self, ctx: &Ctx, id: Uuid) -> Result<(Export, Vec<u8>)> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let primary = self.data.primary();
        let export = exports::get(primary, coop_id, id)
            .await?
            .map(as_seen)
            .ok_or_else(not_found)?;
        match export.state.as_str() {
            "ready" => {}
            "queued" => {
                return Err(Error::conflict(
                    "export_not_ready",
                    "this export is still being built; an email will say when it is ready",
                ));
            }
            "failed" => {
                return Err(Error::Gone {
                    code: "export_failed",
                    message: "this export could not be built; ask for a new one".into(),
                });
            }
            _ => return Err(expired()),
        }
        let bytes = exports::archive(primary, coop_id, id)
            .await?
            .ok_or_else(expired)?;
        Ok((export, bytes))
    }
}

fn as_seen(mut row: ExportRow) -> ExportRow {
    if row.state == "ready" && row.expires_at.is_some_and(|at| at <= now_ms()) {
        row.state = "expired".into();
    }
    row
}

fn expired() -> Error {
    Error::Gone {
        code: "export_expired",
        message: "this export's link has expired and its file was deleted; ask for a new export"
            .into(),
    }
}

fn not_found() -> Error {
    Error::NotFound("no export with that id in your co-op".into())
}
