//! A co-op as its founder signs it up.

use crate::fields::{FieldCheck, Invalid, Parsed};
use crate::{Email, Name, Password};

/// A new co-op and its first coordinator, parsed.
#[derive(Debug)]
pub struct NewCoop {
    pub name: Name,
    pub coordinator_name: Name,
    pub coordinator_email: Email,
    pub coordinator_password: Password,
}

/// The raw fields of a sign-up, as a face received them.
#[derive(Default)]
pub struct NewCoopInput<'a> {
    pub name: Option<&'a str>,
    /// `None` when the whole coordinator is missing.
    pub coordinator: Option<CoordinatorInput<'a>>,
}

#[derive(Default)]
pub struct CoordinatorInput<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl NewCoop {
    pub fn parse(input: NewCoopInput<'_>) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let name = check.required("name", input.name, Name::parse);
        let (coordinator_name, email, password) = match input.coordinator {
            None => {
                check.missing("coordinator");
                (None, None, None)
            }
            Some(c) => (
                check.required("coordinator.name", c.name, Name::parse),
                check.required("coordinator.email", c.email, Email::parse),
                check.required("coordinator.password", c.password, Password::parse),
            ),
        };
        check.done(|| {
            Ok(Self {
                name: name.field("name")?,
                coordinator_name: coordinator_name.field("coordinator.name")?,
                coordinator_email: email.field("coordinator.email")?,
                coordinator_password: password.field("coordinator.password")?,
            })
        })
    }
}
