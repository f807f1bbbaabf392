//! An announcement as a coordinator writes it.

use crate::fields::{FieldCheck, Invalid, Parsed};

pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnouncement {
    pub subject: String,
    pub body: String,
    /// To one class's families; `None`: the whole co-op.
    pub class_id: Option<uuid::Uuid>,
}

impl NewAnnouncement {
    pub fn parse(
        subject: Option<&str>,
        body: Option<&str>,
        class_id: Option<&str>,
    ) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let subject = check.required("subject", subject, |raw| {
            let s = raw.trim();
            match s.chars().count() {
                0 => Err("must not be empty".to_owned()),
                n if n > MAX_SUBJECT_CHARS => {
                    Err(format!("must be at most {MAX_SUBJECT_CHARS} characters"))
                }
                _ if s.chars().any(char::is_control) => {
                    Err("must be one line without control characters".to_owned())
                }
                _ => Ok(s.to_owned()),
            }
        });
        let body = check.required("body", body, |raw| {
            let b = raw.trim();
            match b.chars().count() {
                0 => Err("must not be empty".to_owned()),
                n if n > MAX_BODY_CHARS => {
                    Err(format!("must be at most {MAX_BODY_CHARS} characters"))
                }
                _ if b
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') =>
                {
                    Err("must not contain control characters".to_owned())
                }
                _ => Ok(b.replace("\r\n", "\n")),
            }
        });
        let class_id = match class_id.map(str::trim) {
            None | Some("") => Some(None),
            Some(raw) => check
                .check(
                    "class_id",
                    uuid::Uuid::parse_str(raw).map_err(|_| "is not a class id".to_owned()),
                )
                .map(Some),
        };
        check.done(|| {
            Ok(Self {
                subject: subject.field("subject")?,
                body: body.field("body")?,
                class_id: class_id.field("class_id")?,
            })
        })
    }
}
