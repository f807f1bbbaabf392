//! Who is asking, and how fresh their reads must be.

use coop_domain::Role;
use coop_mechanisms::data::ReadAfter;
use coop_mechanisms::sessions::SessionData;
use uuid::Uuid;

use crate::Error;

/// A signed-in user of one co-op.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: Uuid,
    pub coop_id: Uuid,
    pub role: Role,
    pub email: String,
    /// For family accounts: their family.
    pub family_id: Option<Uuid>,
}

impl From<SessionData> for Caller {
    fn from(session: SessionData) -> Self {
        Self {
            user_id: session.user_id,
            coop_id: session.coop_id,
            role: session.role,
            email: session.email,
            family_id: session.family_id,
        }
    }
}

/// A signed-in request as services see it.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub caller: Caller,
    /// The request's read-your-writes floor; writes through a service raise it.
    pub read_after: ReadAfter,
}

impl Ctx {
    pub fn new(caller: Caller, read_after: ReadAfter) -> Self {
        Self { caller, read_after }
    }

    pub fn coop_id(&self) -> Uuid {
        self.caller.coop_id
    }

    /// Coordinators run the co-op; everyone else is refused.
    pub(crate) fn coordinator(&self) -> Result<(), Error> {
        if self.caller.role == Role::Coordinator {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "only a coordinator of this co-op may do this".into(),
            ))
        }
    }

    /// Coordinators see every family of their co-op (queries are scoped by
    /// co-op), a family account only its own.
    pub(crate) fn may_see_family(&self, family_id: Uuid) -> bool {
        match self.caller.role {
            Role::Coordinator => true,
            Role::Family => self.caller.family_id == Some(family_id),
            Role::Operator => false,
        }
    }
}
