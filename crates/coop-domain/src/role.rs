use serde::{Deserialize, Serialize};

/// What a user may do within its co-op; or, for a platform operator, that
/// they are outside every co-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the co-op: manages families.
    Coordinator,
    /// A member family: sees its own family only.
    Family,
    /// Runs Coop itself (`coop operators add`): a member of no co-op, refused
    /// by every co-op route; sees the operations page.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coordinator => "coordinator",
            Self::Family => "family",
            Self::Operator => "operator",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "coordinator" => Some(Self::Coordinator),
            "family" => Some(Self::Family),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// For rows read from storage: a role the code does not know is an error there.
impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| format!("unknown role {raw:?}"))
    }
}
