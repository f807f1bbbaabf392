//! Documents: who may see one ([`Visibility`]), what it may be called
//! ([`DocumentName`]) and what it may be ([`DocumentType`], taken from the
//! content's first bytes, never from the client's claim).
//!
//! The type comes from the `infer` crate's magic-byte matchers (maintained,
//! no dependencies); plain text has no magic number, so it is recognised
//! here as valid UTF-8 without control characters.

use uuid::Uuid;

use crate::Invalid;

/// Who may see a document. Coordinators see every document of their co-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Everyone in the co-op.
    Coop,
    /// The class's teacher and the families with a child enrolled in it.
    Class(Uuid),
    /// That family.
    Family(Uuid),
}

impl Visibility {
    /// From the upload's fields: `visibility` (`coop`, `class`, `family`) and
    /// the id that goes with it. A family uploading without a `family_id`
    /// means its own (`own_family`).
    pub fn parse(
        visibility: Option<&str>,
        class_id: Option<&str>,
        family_id: Option<&str>,
        own_family: Option<Uuid>,
    ) -> Result<Self, Invalid> {
        let id = |field: &str, raw: Option<&str>| -> Result<Option<Uuid>, Invalid> {
            match raw.map(str::trim).filter(|raw| !raw.is_empty()) {
                None => Ok(None),
                Some(raw) => raw
                    .parse()
                    .map(Some)
                    .map_err(|_| Invalid::field(field, "must be an id (a UUID)")),
            }
        };
        let class_id = id("class_id", class_id)?;
        let family_id = id("family_id", family_id)?;
        match visibility.map(str::trim) {
            None | Some("") => Err(Invalid::field(
                "visibility",
                "say who may see it: `coop`, `class` (with class_id) or `family` (with family_id)",
            )),
            Some("coop") => match (class_id, family_id) {
                (None, None) => Ok(Self::Coop),
                _ => Err(Invalid::field(
                    "visibility",
                    "a document for the whole co-op takes no class_id or family_id",
                )),
            },
            Some("class") => match (class_id, family_id) {
                (Some(class), None) => Ok(Self::Class(class)),
                (None, _) => Err(Invalid::field("class_id", "name the class (its id)")),
                (Some(_), Some(_)) => Err(Invalid::field(
                    "family_id",
                    "a class's document takes no family_id",
                )),
            },
            Some("family") => match (family_id.or(own_family), class_id) {
                (Some(family), None) => Ok(Self::Family(family)),
                (None, _) => Err(Invalid::field("family_id", "name the family (its id)")),
                (Some(_), Some(_)) => Err(Invalid::field(
                    "class_id",
                    "a family's document takes no class_id",
                )),
            },
            Some(other) => Err(Invalid::field(
                "visibility",
                format!("{other:?} is not one of `coop`, `class`, `family`"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coop => "coop",
            Self::Class(_) => "class",
            Self::Family(_) => "family",
        }
    }

    pub fn class_id(self) -> Option<Uuid> {
        match self {
            Self::Class(id) => Some(id),
            _ => None,
        }
    }

    pub fn family_id(self) -> Option<Uuid> {
        match self {
            Self::Family(id) => Some(id),
            _ => None,
        }
    }

    /// The stored form back (`None` for a row that breaks the table's checks).
    pub fn from_stored(
        kind: &str,
        class_id: Option<Uuid>,
        family_id: Option<Uuid>,
    ) -> Option<Self> {
        match (kind, class_id, family_id) {
            ("coop", _, _) => Some(Self::Coop),
            ("class", Some(class), _) => Some(Self::Class(class)),
            ("family", _, Some(family)) => Some(Self::Family(family)),
            _ => None,
        }
    }
}

/// Longest name kept, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A document's name: one path component of printable characters, no
/// leading dot, at most [`MAX_NAME_CHARS`]. Safe in a `Content-Disposition`
/// header (quotes and backslashes are replaced) and as a file name anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentName(String);

impl DocumentName {
    /// The client's file name made safe; an empty result is `document`.
    /// Uploads never fail on their name: browsers send whatever the file
    /// was called (with a Windows path, sometimes).
    pub fn sanitize(raw: &str) -> Self {
        Self(clean(raw).unwrap_or_else(|| "document".into()))
    }

    /// A new name asked for by a person (rename): refused when nothing is
    /// left after cleaning.
    pub fn parse(raw: &str) -> Result<Self, String> {
        clean(raw)
            .map(Self)
            .ok_or_else(|| "give the document a name (letters or digits)".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

fn clean(raw: &str) -> Option<String> {
    // The last component of a path, in either convention.
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let mut out = String::with_capacity(base.len().min(MAX_NAME_CHARS * 4));
    let mut last_space = true;
    for c in base.chars() {
        let c = match c {
            '"' | '\'' | '`' => '_',
            c if c.is_control() || c.is_whitespace() => ' ',
            // Characters Windows refuses in names, and the separators' kin.
            '<' | '>' | ':' | '|' | '?' | '*' => '_',
            c => c,
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        out.push(c);
    }
    let trimmed = out.trim().trim_start_matches(['.', ' ']);
    let name: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim_end().to_owned();
    name.chars().any(char::is_alphanumeric).then_some(name)
}

/// How many leading bytes [`DocumentType::sniff`] wants: enough for the
/// office formats, whose zip entries it reads.
pub const SNIFF_BYTES: usize = 8192;

/// An allowed document type, recognised from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentType {
    pub mime: &'static str,
    pub extension: &'static str,
}

/// What may be uploaded: documents and pictures a co-op shares. Archives,
/// executables, HTML and SVG (which a browser would run) are not.
const ALLOWED: &[(&str, &str)] = &[
    ("application/pdf", "pdf"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("application/msword", "doc"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    ("application/vnd.ms-excel", "xls"),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    ("application/vnd.ms-powerpoint", "ppt"),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    ("application/vnd.oasis.opendocument.text", "odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", "ods"),
    ("application/vnd.oasis.opendocument.presentation", "odp"),
    ("application/rtf", "rtf"),
    ("text/plain", "txt"),
];

impl DocumentType {
    /// The type of a content starting with `head` (its first
    /// [`SNIFF_BYTES`], or all of it if shorter). `Err` names what it is
    /// when that is known but not allowed.
    pub fn sniff(head: &[u8]) -> Result<Self, Option<String>> {
        if head.is_empty() {
            return Err(None);
        }
        if let Some(found) = infer::get(head) {
            return Self::allowed(found.mime_type()).ok_or_else(|| Some(found.mime_type().into()));
        }
        if looks_like_text(head) {
            return Ok(Self::allowed("text/plain").unwrap_or(TEXT));
        }
        Err(None)
    }

    fn allowed(mime: &str) -> Option<Self> {
        ALLOWED
            .iter()
            .find(|(allowed, _)| *allowed == mime)
            .map(|&(mime, extension)| Self { mime, extension })
    }

    /// A stored type back (anything not allowed any more is served as
    /// bytes, never as what it claims).
    pub fn from_stored(mime: &str) -> Self {
        Self::allowed(mime).unwrap_or(Self {
            mime: "application/octet-stream",
            extension: "bin",
        })
    }

    pub fn is_image(self) -> bool {
        self.mime.starts_with("image/")
    }

    /// The `Content-Type` to serve it with.
    pub fn content_type(self) -> &'static str {
        if self.mime == "text/plain" {
            "text/plain; charset=utf-8"
        } else {
            self.mime
        }
    }

    /// Every media type a download can carry (without parameters): the
    /// allowed types, and bytes (a stored type no longer allowed).
    pub fn served_media_types() -> impl Iterator<Item = &'static str> {
        ALLOWED
            .iter()
            .map(|&(mime, _)| mime)
            .chain(std::iter::once("application/octet-stream"))
    }

    /// The allowed types' extensions, for messages.
    pub fn allowed_list() -> String {
        ALLOWED
            .iter()
            .map(|(_, extension)| *extension)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const TEXT: DocumentType = DocumentType {
    mime: "text/plain",
    extension: "txt",
};

/// UTF-8 (a character cut off by the end of `head` allowed) with no
/// control characters but tabs, line ends and form feeds.
fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(err) if err.error_len().is_none() => {
            // Cut mid-character at the end of the sniffed bytes.
            std::str::from_utf8(&head[..err.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_quotes_and_control_characters() {
        assert_eq!(
            DocumentName::sanitize("C:\\Users\\ann\\Handbook 2026.pdf").as_str(),
            "Handbook 2026.pdf"
        );
        assert_eq!(
            DocumentName::sanitize("../../etc/passwd").as_str(),
            "passwd"
        );
        assert_eq!(
            DocumentName::sanitize("a\"b\r\nc\td.txt").as_str(),
            "a_b c d.txt"
        );
        assert_eq!(DocumentName::sanitize("...hidden").as_str(), "hidden");
        assert_eq!(DocumentName::sanitize("///").as_str(), "document");
        assert_eq!(DocumentName::sanitize("").as_str(), "document");
        assert_eq!(
            DocumentName::sanitize("Ünïcode – fine.pdf").as_str(),
            "Ünïcode – fine.pdf"
        );
        let long = "x".repeat(500);
        assert_eq!(
            DocumentName::sanitize(&long).as_str().chars().count(),
            MAX_NAME_CHARS
        );
        assert!(DocumentName::parse("  ").is_err());
        assert!(DocumentName::parse("***").is_err());
        assert_eq!(
            DocumentName::parse(" New name ").unwrap().as_str(),
            "New name"
        );
    }

    #[test]
    fn types_come_from_the_content() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(DocumentType::sniff(&png).unwrap().mime, "image/png");
        assert_eq!(
            DocumentType::sniff(b"%PDF-1.7\n...").unwrap().mime,
            "application/pdf"
        );
        assert_eq!(
            DocumentType::sniff("Plain words, ünïcode too.\n".as_bytes())
                .unwrap()
                .mime,
            "text/plain"
        );
        // A character cut by the end of the sniffed bytes is still text.
        let cut = &"é".as_bytes()[..1];
        let mut text = b"abc".to_vec();
        text.extend_from_slice(cut);
        assert!(DocumentType::sniff(&text).is_ok());
        // An executable, whatever it is called.
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        elf.resize(64, 0);
        assert_eq!(
            DocumentType::sniff(&elf).unwrap_err().as_deref(),
            Some("application/x-executable")
        );
        assert_eq!(DocumentType::sniff(&[0, 1, 2, 3, 0xff]).unwrap_err(), None);
        assert_eq!(DocumentType::sniff(b"").unwrap_err(), None);
        assert_eq!(
            DocumentType::sniff(b"<html><script>alert(1)</script></html>")
                .unwrap_err()
                .as_deref(),
            Some("text/html")
        );
    }

    #[test]
    fn visibility_needs_its_id() {
        let class = Uuid::now_v7();
        let own = Uuid::now_v7();
        assert_eq!(
            Visibility::parse(Some("coop"), None, None, None).unwrap(),
            Visibility::Coop
        );
        assert_eq!(
            Visibility::parse(Some("class"), Some(&class.to_string()), None, None).unwrap(),
            Visibility::Class(class)
        );
        assert_eq!(
            Visibility::parse(Some("family"), None, None, Some(own)).unwrap(),
            Visibility::Family(own)
        );
        assert!(Visibility::parse(Some("class"), None, None, None).is_err());
        assert!(Visibility::parse(Some("family"), None, None, None).is_err());
        assert!(Visibility::parse(Some("coop"), Some(&class.to_string()), None, None).is_err());
        assert!(Visibility::parse(None, None, None, None).is_err());
        assert!(Visibility::parse(Some("class"), Some("nope"), None, None).is_err());
        assert!(Visibility::parse(Some("everyone"), None, None, None).is_err());
    }
}
