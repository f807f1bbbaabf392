//! Co-ops, their users, and signing in: founding a co-op with its first
//! coordinator, logging in and out, a family accepting its invite. Every way of
//! signing in ends in [`Accounts::start_session`].

use coop_domain::{Email, NewCoop, Password, PasswordHash, Role, token};
use coop_mechanisms::data::{Data, ReadAfter};
use coop_mechanisms::hashing::Hasher;
use coop_mechanisms::sessions::{SessionData, SessionStore};
use coop_mechanisms::store::accounts::{self as account_store, EmailChangeOutcome, ResetOutcome};
use coop_mechanisms::store::coops::{self, CreatedCoop, VerifyOutcome};
use coop_mechanisms::store::families;
use coop_mechanisms::store::idempotency::Claim;
use coop_mechanisms::store::invites::{self, AcceptOutcome, NewFamilyUser};
use coop_mechanisms::store::jobs::now_ms;
use coop_mechanisms::store::operators;
use uuid::Uuid;

use crate::{Caller, Error, Result};

/// A new session: the caller, and the token its cookie carries.
pub struct SignedIn {
    pub caller: Caller,
    pub token: String,
}

#[derive(Clone)]
pub struct Accounts {
    data: Data,
    sessions: SessionStore,
    hasher: Hasher,
    job_max_attempts: u32,
}

impl Accounts {
    pub(crate) fn new(
        data: Data,
        sessions: SessionStore,
        hasher: Hasher,
        job_max_attempts: u32,
    ) -> Self {
        Self {
            data,
            sessions,
            hasher,
            job_max_attempts,
        }
    }

    /// Founds a co-op with its first coordinator, unconfirmed: a job emails
    /// the founder a confirmation link, and until it is used the co-op's
    /// emails to anyone else wait. Under an Idempotency-Key whose earlier
    /// holder created it already, answers with that co-op.
    ///
    /// An address that has an account already gets an email saying so (or,
    /// when it is the founder of a co-op still unconfirmed, a new
    /// confirmation link), and the answer is the same as for a new address,
    /// after the same work: the sign-up never tells anyone which addresses
    /// have accounts. `None` then.
    pub async fn create_coop(
        &self,
        new: NewCoop,
        claim: Option<&Claim>,
    ) -> Result<Option<CreatedCoop>> {
        if let Some(claim) = claim
            && let Some([coop_id, coordinator_id]) = claim.committed_as()?
        {
            // An earlier attempt with this key created the co-op, then its
            // instance died before answering: answer for it.
            return Ok(Some(CreatedCoop {
                coop_id,
                coordinator_id,
            }));
        }
        let password = self.hasher.hash(new.coordinator_password).await?;
        let attempts = self.job_max_attempts;
        let created = coops::create_coop(
            self.data.primary(),
            coops::NewCoop {
                name: &new.name,
                coordinator_name: &new.coordinator_name,
                coordinator_email: &new.coordinator_email,
                coordinator_password: &password,
            },
            claim,
            |coop_id, user_id| crate::jobs::signup_verification_job(coop_id, user_id, attempts),
        )
        .await;
        let created = match created {
            Ok(created) => created.ok_or(Error::TakenOver)?,
            Err(err) if coop_mechanisms::store::is_unique_violation(&err) => {
                self.tell_existing_account(&new.coordinator_email).await?;
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        self.data.committed(&ReadAfter::default(), &[]).await;
        Ok(Some(created))
    }

    /// A sign-up with an address that has an account: its owner hears of
    /// it by email, and nobody else does.
    async fn tell_existing_account(&self, email: &Email) -> Result<()> {
        let primary = self.data.primary();
        let Some(user) = coops::find_user_by_email(primary, email).await? else {
            // Gone in the meantime: nobody to tell.
            return Ok(());
        };
        let job = if !user.coop_verified && user.role == Role::Coordinator {
            // The founder again, who lost the first link: a new one.
            crate::jobs::signup_verification_job(user.coop_id, user.id, self.job_max_attempts)
        } else {
            crate::jobs::account_exists_job(user.coop_id, user.id, self.job_max_attempts)
        };
        coop_mechanisms::store::jobs::enqueue(primary, &[job]).await?;
        Ok(())
    }

    /// Confirms a founder's email with the token from the link sent to it:
    /// the co-op's held emails go out.
    pub async fn verify_email(&self, verify_token: &str) -> Result<()> {
        match coops::verify_signup(self.data.primary(), &token::hash(verify_token)).await? {
            VerifyOutcome::Verified { .. } => {
                self.data.committed(&ReadAfter::default(), &[]).await;
                Ok(())
            }
            // Confirming twice is not a mistake worth an error: the address
            // is confirmed, which is what the person wants to hear.
            VerifyOutcome::AlreadyVerified => Ok(()),
            VerifyOutcome::Unknown => Err(Error::NotFound(
                "this confirmation link does not exist; check that you copied the whole link"
                    .into(),
            )),
            VerifyOutcome::Expired => Err(Error::Gone {
                code: "verification_expired",
                message: "this confirmation link has expired; start the co-op again with \
                          the same email to get a new link"
                    .into(),
            }),
        }
    }

    /// Whether the co-op's founder has confirmed their email.
    pub async fn is_verified(&self, coop_id: Uuid) -> Result<bool> {
        Ok(coops::is_verified(self.data.primary(), coop_id).await?)
    }

    /// Checks the password and starts a new session, ending `previous` (the
    /// session the client had, if any). Log-in reads the primary: a password
    /// just set must work at once.
    pub async fn log_in(
        &self,
        email: &str,
        password: String,
        previous: Option<&str>,
    ) -> Result<SignedIn> {
        // A malformed email cannot belong to anyone: same answer as a wrong
        // one, after the same amount of work.
        let primary = self.data.primary();
        let caller = match Email::parse(email) {
            Ok(email) => match coops::find_user_by_email(primary, &email).await? {
                Some(user) => Some((
                    Some(user.password_hash),
                    Caller {
                        user_id: user.id,
                        coop_id: user.coop_id,
                        role: user.role,
                        email: user.email,
                        family_id: user.family_id,
                    },
                )),
                // Not a co-op's member: perhaps a platform operator (whose
                // password is unset until they use their link).
                None => operators::find_by_email(primary, email.as_str())
                    .await?
                    .map(|operator| (operator.password_hash.clone(), operator_caller(operator))),
            },
            Err(_) => None,
        };
        let stored = caller
            .as_ref()
            .and_then(|(hash, _)| hash.clone())
            .map(PasswordHash);
        let verified = self.hasher.verify(stored, password).await?;
        let caller = match caller {
            Some((_, caller)) if verified => caller,
            _ => return Err(Error::InvalidCredentials),
        };
        if let Some(previous) = previous {
            self.sessions.delete(previous).await?;
        }
        self.start_session(caller).await
    }

    /// Ends the session everywhere (no session is fine too).
    pub async fn log_out(&self, token: Option<&str>) -> Result<()> {
        if let Some(token) = token {
            self.sessions.delete(token).await?;
        }
        Ok(())
    }

    /// Creates the family's account from the invite in its welcome email, and
    /// signs it in. Invites are read on the primary: single-use tokens must
    /// see every use.
    pub async fn accept_invite(&self, invite_token: &str, password: Password) -> Result<SignedIn> {
        let primary = self.data.primary();
        let invite = invites::find(primary, &token::hash(invite_token))
            .await?
            .ok_or_else(|| {
                Error::NotFound(
                    "this invite does not exist; check that you copied the whole link, \
                     or ask your co-op's coordinator for a new one"
                        .into(),
                )
            })?;
        if invite.used_at.is_some() {
            return Err(invite_used());
        }
        if invite.expires_at < now_ms() {
            return Err(Error::Gone {
                code: "invite_expired",
                message: "this invite has expired; ask your co-op's coordinator to enroll you \
                          again or send a new invite"
                    .into(),
            });
        }
        let family = families::get(primary, invite.coop_id, invite.family_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound("the family this invite was for no longer exists".into())
            })?;
        let password_hash = self.hasher.hash(password).await?;
        let user_id = Uuid::now_v7();
        let user = NewFamilyUser {
            user_id,
            email: &family.email,
            name: &family.family_name,
            password_hash: &password_hash.0,
        };
        match invites::accept(primary, &invite, &user).await? {
            AcceptOutcome::Accepted => {}
            AcceptOutcome::AlreadyUsed => return Err(invite_used()),
            AcceptOutcome::AccountExists => {
                return Err(Error::conflict(
                    "account_exists",
                    format!(
                        "an account for {} exists already; log in with it instead",
                        family.email
                    ),
                ));
            }
        }
        self.data.committed(&ReadAfter::default(), &[]).await;
        self.start_session(Caller {
            user_id,
            coop_id: invite.coop_id,
            role: Role::Family,
            email: family.email,
            family_id: Some(family.id),
        })
        .await
    }

    /// Changes the signed-in user's password after checking the current one,
    /// and ends every other session of theirs (`session`, the token of the
    /// one asking, stays).
    pub async fn change_password(
        &self,
        caller: &Caller,
        session: Option<&str>,
        current: String,
        new: Password,
    ) -> Result<()> {
        let primary = self.data.primary();
        let user = account_store::user(primary, caller.user_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let stored = Some(PasswordHash(user.password_hash));
        if !self.hasher.verify(stored, current).await? {
            return Err(coop_domain::Invalid::field(
                "current_password",
                "is not your current password",
            )
            .into());
        }
        let hash = self.hasher.hash(new).await?;
        let keep = session.map(token::hash);
        let ended = account_store::set_password(primary, user.id, &hash.0, keep.as_deref()).await?;
        self.sessions.forget(&ended).await;
        Ok(())
    }

    /// Ends every session of the user, the one asking included.
    pub async fn sign_out_everywhere(&self, caller: &Caller) -> Result<()> {
        self.sessions.end_all(caller.user_id, None).await?;
        Ok(())
    }

    /// Emails a single-use password reset link if `email` belongs to an
    /// account. The answer is the same either way: it does not tell anyone
    /// which emails have accounts.
    pub async fn request_password_reset(&self, email: &str) -> Result<()> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let primary = self.data.primary();
        if let Some(user) = coops::find_user_by_email(primary, &email).await? {
            let job = crate::jobs::password_reset_job(user.coop_id, user.id, self.job_max_attempts);
            coop_mechanisms::store::jobs::enqueue(primary, &[job]).await?;
            self.data.committed(&ReadAfter::default(), &[]).await;
        }
        Ok(())
    }

    /// Sets a new password with the token from a reset email. Every session
    /// of the account ends; the person signs in with the new password.
    pub async fn reset_password(&self, reset_token: &str, new: Password) -> Result<()> {
        let hash = self.hasher.hash(new).await?;
        match account_store::redeem_reset(self.data.primary(), &token::hash(reset_token), &hash.0)
            .await?
        {
            ResetOutcome::Done { ended, .. } => {
                self.sessions.forget(&ended).await;
                self.data.committed(&ReadAfter::default(), &[]).await;
                Ok(())
            }
            // Not a member's reset link: perhaps an operator's set-password
            // link (`coop operators add`), redeemed the same way.
            ResetOutcome::Unknown => self.set_operator_password(&hash.0, reset_token).await,
            ResetOutcome::Used => Err(reset_used()),
            ResetOutcome::Expired => Err(reset_expired()),
        }
    }

    async fn set_operator_password(&self, hash: &str, link_token: &str) -> Result<()> {
        match operators::redeem_link(self.data.primary(), &token::hash(link_token), hash).await? {
            ResetOutcome::Done { ended, .. } => {
                self.sessions.forget(&ended).await;
                Ok(())
            }
            ResetOutcome::Unknown => Err(Error::NotFound(
                "this reset link does not exist; check that you copied the whole link, \
                 or ask for a new one"
                    .into(),
            )),
            ResetOutcome::Used => Err(reset_used()),
            ResetOutcome::Expired => Err(reset_expired()),
        }
    }

    /// Starts changing the signed-in user's email: after checking the
    /// password, a job emails a single-use confirmation link to the new
    /// address. Nothing changes until that link is used.
    pub async fn request_email_change(
        &self,
        caller: &Caller,
        password: String,
        new_email: Email,
    ) -> Result<()> {
        let primary = self.data.primary();
        let user = account_store::user(primary, caller.user_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let stored = Some(PasswordHash(user.password_hash));
        if !self.hasher.verify(stored, password).await? {
            return Err(
                coop_domain::Invalid::field("current_password", "is not your password").into(),
            );
        }
        if new_email.as_str() == user.email {
            return Err(coop_domain::Invalid::field("new_email", "is your email already").into());
        }
        let job = crate::jobs::email_change_job(
            user.coop_id,
            user.id,
            new_email.as_str(),
            self.job_max_attempts,
        );
        coop_mechanisms::store::jobs::enqueue(primary, &[job]).await?;
        self.data.committed(&ReadAfter::default(), &[]).await;
        Ok(())
    }

    /// Confirms an email change with the token from the link sent to the new
    /// address. Every session of the account ends (they carry the old
    /// address); the person signs in with the new one.
    pub async fn confirm_email_change(&self, confirm_token: &str) -> Result<()> {
        match account_store::confirm_email_change(self.data.primary(), &token::hash(confirm_token))
            .await?
        {
            EmailChangeOutcome::Done {
                coop_id,
                family_id,
                ended,
            } => {
                self.sessions.forget(&ended).await;
                let changed: Vec<_> = family_id
                    .map(|id| crate::families::key(coop_id, id))
                    .into_iter()
                    .collect();
                self.data.committed(&ReadAfter::default(), &changed).await;
                Ok(())
            }
            EmailChangeOutcome::Unknown => Err(Error::NotFound(
                "this confirmation link does not exist; check that you copied the whole link"
                    .into(),
            )),
            EmailChangeOutcome::Used => Err(Error::conflict(
                "email_change_used",
                "this confirmation link was used already; sign in with your new email",
            )),
            EmailChangeOutcome::Expired => Err(Error::Gone {
                code: "email_change_expired",
                message: "this confirmation link has expired; change the email again from your \
                          profile"
                    .into(),
            }),
            EmailChangeOutcome::Taken => Err(Error::conflict(
                "email_taken",
                "this email belongs to another account now; choose another on your profile",
            )),
        }
    }

    /// The one way a session begins: a new random token (never the one the
    /// client had: no session fixation).
    async fn start_session(&self, caller: Caller) -> Result<SignedIn> {
        let mut session = SessionData {
            user_id: caller.user_id,
            coop_id: caller.coop_id,
            role: caller.role,
            email: caller.email.clone(),
            family_id: caller.family_id,
            expires_at: 0,
            idle_until: 0,
        };
        let token = self.sessions.create(&mut session).await?;
        Ok(SignedIn { caller, token })
    }

    /// The signed-in caller behind a session token, if the session is live.
    pub async fn caller(&self, token: &str, after: &ReadAfter) -> Result<Option<Caller>> {
        Ok(self.sessions.load(token, after).await?.map(Caller::from))
    }

    /// (user id, name, email) of the co-op's users, for choosing a teacher
    /// (coordinators).
    pub async fn members(&self, ctx: &crate::Ctx) -> Result<Vec<(Uuid, String, String)>> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                coops::members(&db, coop_id).await
            })
            .await?)
    }

    pub fn session_ttl(&self) -> std::time::Duration {
        self.sessions.ttl()
    }
}

/// The caller an operator's session carries: no co-op (the nil id, which no
/// co-op has), so a query scoped by co-op could find nothing even if a co-op
/// route let an operator through, which none does.
fn operator_caller(operator: operators::OperatorRow) -> Caller {
    Caller {
        user_id: operator.id,
        coop_id: Uuid::nil(),
        role: Role::Operator,
        email: operator.email,
        family_id: None,
    }
}

fn reset_used() -> Error {
    Error::conflict(
        "reset_used",
        "this reset link was used already; sign in, or ask for a new link",
    )
}

fn reset_expired() -> Error {
    Error::Gone {
        code: "reset_expired",
        message: "this reset link has expired; ask for a new one".into(),
    }
}

fn invite_used() -> Error {
    Error::conflict(
        "invite_used",
        "this invite was used already; log in with the password chosen then",
    )
}
