//! Platform operators, from the command line (`coop operators add EMAIL`): an
//! account outside every co-op, with a one-time link to set its password. The
//! link opens the password-reset page (`/reset-password#token=…`) and is
//! redeemed like a reset link (`Accounts::reset_password`); signing in is the
//! same log-in as everyone's (`Accounts::log_in`).

use std::time::Duration;

use coop_domain::{Email, token};
use coop_mechanisms::store::Db;
use coop_mechanisms::store::jobs::now_ms;
use coop_mechanisms::store::operators::{self, Added};

use crate::{Error, Result};

/// How long an operator's set-password link works: whoever runs the command
/// passes the link on at once.
pub const LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Adds a platform operator, or finds the existing one, and returns a token
/// for their set-password link (valid for [`LINK_TTL`]; a repeat issues a
/// new one, so a lost link is replaced the same way).
pub async fn add(db: &Db, email: &Email) -> Result<String> {
    let link = token::generate();
    let expires_at = now_ms() + LINK_TTL.as_millis() as i64;
    match operators::add(db, email.as_str(), &token::hash(&link), expires_at).await? {
        Added::New(_) | Added::Existing(_) => Ok(link),
        Added::MemberAccount => Err(Error::conflict(
            "email_taken",
            "this address is a co-op member's account; an operator needs an address of their own",
        )),
    }
}
