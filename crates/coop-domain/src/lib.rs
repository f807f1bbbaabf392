//! Parsed values. Parse at the edge, then trust the type: a `Name` is always
//! trimmed and 1–200 characters, an `Email` always looks like one and is
//! lower-cased, a `Password` always has at least 10 characters, `Money` is
//! always a positive whole number of cents in a known currency.
//!
//! This crate knows nothing of HTTP, SQL or the async runtime: a parse failure
//! is a plain sentence for a person (`String`), collected per field by
//! [`FieldCheck`] into [`Invalid`]; each face (JSON API, web pages) decides how
//! to show it.

mod announcement;
pub mod clock;
mod coop;
pub mod courses;
mod document;
mod email;
mod family;
mod fields;
mod money;
mod name;
mod password;
mod payment;
mod role;
mod states;
pub mod token;

pub use announcement::NewAnnouncement;
pub use coop::{CoordinatorInput, NewCoop, NewCoopInput};
pub use document::{DocumentName, DocumentType, SNIFF_BYTES, Visibility};
pub use email::Email;
pub use family::{NewFamily, parse_date};
pub use fields::{FieldCheck, FieldErrors, Invalid, Parsed};
pub use money::{Currency, MAX_AMOUNT_CENTS, Money};
pub use name::Name;
pub use password::{Password, PasswordHash};
pub use payment::{MAX_DESCRIPTION_CHARS, NewPayment};
pub use role::Role;
pub use states::PaymentState;
