//! `coop transfer --from URL --to URL`: copies a Coop database from SQLite to
//! PostgreSQL or back, for a co-op that outgrew the embedded tier.
//!
//! What it guarantees:
//! - **Nothing is skipped silently**: the tables and columns of both ends must
//!   be exactly those [`schema`] knows, or nothing is copied; the target's
//!   migrations run first.
//! - **The source is not written**: it is opened read-only, and the copy
//!   refuses while a Coop uses it (SQLite: the lock file every `coop serve`
//!   holds, see `coop_runtime::data_lock`; PostgreSQL: a connection of Coop's).
//! - **Resumable**: rows go in batches, in key order, each batch committed with
//!   the resume position ([`progress`]); after a crash or Ctrl-C the same
//!   command continues after the last committed batch and says where.
//! - **Verified**: before it reports success, row counts and checksums of
//!   every copied table agree on both sides ([`verify`]).
//!
//! Sessions are left behind on purpose (people sign in again); the report
//! says how many.

mod db;
mod progress;
pub mod schema;
mod value;
mod verify;

use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use db::{Database, Role};
use progress::Position;
use schema::{TABLES, Table};
use value::Value;

#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// The database to copy: `sqlite://PATH` (e.g. sqlite://coop-data/coop.sqlite3)
    /// or `postgres://USER@HOST:PORT/DB`. Not written; no Coop may be using it.
    #[arg(long, value_name = "URL")]
    pub from: String,

    /// Where to copy it: an empty (or new) database of the other kind, or the
    /// one a previous, interrupted run of the same transfer was copying into.
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// Rows per batch (each batch is one transaction on the target).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub batch_size: u32,
}

pub async fn run(args: TransferArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = transfer(&args) => result,
        _ = tokio::signal::ctrl_c() => {
            // The batch in flight is rolled back with its position: nothing
            // half-copied stays behind.
            anyhow::bail!(
                "interrupted: every batch committed before the interruption is kept on the \
                 target; run the same command again to resume"
            )
        }
    }
}

async fn transfer(args: &TransferArgs) -> anyhow::Result<()> {
    let source = Database::open(&args.from, Role::Source).await?;
    let target = Database::open(&args.to, Role::Target).await?;
    eprintln!(
        "coop transfer: {} ({}) → {} ({})",
        source.shown,
        source.backend(),
        target.shown,
        target.backend()
    );
    check_source_schema(&source).await?;
    target.migrate().await?;
    schema::check("target", &target.live_schema().await?)?;

    let positions = start_or_resume(&source, &target).await?;
    let started = Instant::now();
    let mut copied = 0i64;
    for table in TABLES.iter().filter(|t| t.copied) {
        let position = positions
            .iter()
            .find(|p| p.table == table.name)
            .cloned()
            .unwrap_or_else(|| Position::start(table.name));
        copied += copy_table(&source, &target, table, position, args.batch_size as usize).await?;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "copied {copied} rows in {:.1} s ({:.0} rows/s); verifying row counts and checksums on both sides",
        elapsed.as_secs_f64(),
        copied as f64 / elapsed.as_secs_f64().max(0.001)
    );

    let mut mismatches = Vec::new();
    let mut total = 0;
    for table in TABLES.iter().filter(|t| t.copied) {
        let check = verify::table(&source, &target, table).await?;
        let verdict = if check.matches() { "ok" } else { "DIFFERENT" };
        eprintln!(
            "  {:<24} {:>9} rows  source {:032x}  target {:032x}  {verdict}",
            check.table, check.source.rows, check.source.checksum, check.target.checksum
        );
        total += check.target.rows;
        if !check.matches() {
            mismatches.push(format!(
                "{} ({} rows on the source, {} on the target)",
                check.table, check.source.rows, check.target.rows
            ));
        }
    }
    if !mismatches.is_empty() {
        anyhow::bail!(
            "verification failed: {} differ between source and target. Was the source written \
             during the copy? Do not serve from the target; start again into an empty database",
            mismatches.join(", ")
        );
    }
    let sessions = source.count("sessions").await?;
    println!(
        "transfer complete and verified: {total} rows in {} tables are the same on {} as on {}.",
        TABLES.iter().filter(|t| t.copied).count(),
        target.shown,
        source.shown
    );
    println!("left behind: {sessions} session(s); everyone signs in again on the new database.");
    source.close().await;
    target.close().await;
    Ok(())
}

/// The source must be at exactly the migrations this binary knows: an older
/// one lacks columns, a newer one may hold tables this binary cannot copy.
async fn check_source_schema(source: &Database) -> anyhow::Result<()> {
    let applied = source.applied_migrations().await?;
    let known: Vec<i64> = db::migrator(source.backend())
        .iter()
        .map(|m| m.version)
        .collect();
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        anyhow::bail!(
            "the source has migration {unknown}, which this coop does not know: it was made by a \
             newer Coop; transfer with that version"
        );
    }
    if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
        anyhow::bail!(
            "the source lacks migration {missing}: start this version of Coop on it once (or run \
             `coop migrate` against it), then transfer"
        );
    }
    schema::check("source", &source.live_schema().await?)
}

/// A new transfer needs an empty target; a resumed one must come from the
/// same source.
async fn start_or_resume(source: &Database, target: &Database) -> anyhow::Result<Vec<Position>> {
    let positions = target.load_progress().await?;
    match positions.iter().find(|p| p.table == progress::SOURCE) {
        Some(recorded) => {
            let from = recorded.last_key.clone().unwrap_or_default();
            anyhow::ensure!(
                from == source.shown,
                "the target holds a transfer from {from}, not from {}: finish that one, or \
                 transfer into an empty database",
                source.shown
            );
            Ok(positions)
        }
        None => {
            for table in TABLES {
                let rows = target.count(table.name).await?;
                anyhow::ensure!(
                    rows == 0,
                    "the target already holds data ({rows} rows in {}): transfer into an empty \
                     database",
                    table.name
                );
            }
            target
                .save_progress(&Position {
                    table: progress::SOURCE.into(),
                    last_key: Some(source.shown.clone()),
                    rows_copied: 0,
                    done: false,
                })
                .await?;
            Ok(Vec::new())
        }
    }
}

/// Copies what is left of one table; returns the rows copied by this run.
async fn copy_table(
    source: &Database,
    target: &Database,
    table: &'static Table,
    mut position: Position,
    batch: usize,
) -> anyhow::Result<i64> {
    let total = source.count(table.name).await?.max(0) as u64;
    let bar = bar(table.name, total);
    if position.done {
        say(
            &bar,
            format!(
                "  {:<24} {:>9} rows, copied by an earlier run",
                table.name, position.rows_copied
            ),
        );
        bar.finish_and_clear();
        return Ok(0);
    }
    let mut after: Option<Vec<Value>> = position.after(table)?;
    if let Some(key) = &position.last_key {
        say(
            &bar,
            format!(
                "{}: resuming after {} rows (last key {key})",
                table.name, position.rows_copied
            ),
        );
    }
    let resumed_at = position.rows_copied;
    bar.set_position(position.rows_copied as u64);
    bar.reset_eta();
    let keys = table.key_indexes();
    loop {
        let rows = source.read_batch(table, after.as_deref(), batch).await?;
        let Some(last) = rows.last() else {
            position.done = true;
            target.save_progress(&position).await?;
            break;
        };
        position.advance(table, last, rows.len());
        target.write_batch(table, &rows, &position).await?;
        after = Some(keys.iter().map(|&i| last[i].clone()).collect());
        bar.set_position(position.rows_copied as u64);
    }
    bar.finish();
    if bar.is_hidden() {
        eprintln!("  {:<24} {:>9} rows", table.name, position.rows_copied);
    }
    Ok(position.rows_copied - resumed_at)
}

/// A line above the bars, or alone when they are hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A bar per table: rows, rate and time left. Drawn only on a terminal
/// (indicatif hides it otherwise; copy_table then prints one line per table).
fn bar(table: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {human_pos:>9}/{human_len} rows  {rate:>12}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", state.per_sec());
            },
        )
        .progress_chars("=> "),
    );
    bar.set_prefix(table.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
