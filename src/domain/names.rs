//! Tenant and trigger names come from file paths and URLs; they are validated once here.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name `{0}` is longer than 64 characters")]
    TooLong(String),
    #[error("name `{0}` starts with `_`, which is reserved for flowgate")]
    Reserved(String),
    #[error(
        "name `{0}` may only contain letters, digits, `_` and `-`, and must start with a letter or digit"
    )]
    Invalid(String),
}

fn validate(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(NameError::Empty);
    };
    if name.len() > 64 {
        return Err(NameError::TooLong(name.to_owned()));
    }
    if first == '_' {
        return Err(NameError::Reserved(name.to_owned()));
    }
    if !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NameError::Invalid(name.to_owned()));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                validate(s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A tenant: the first path segment of a trigger URL and a folder under `flows/`.
    TenantName
);
name_type!(
    /// A trigger: the second path segment and the file name (without `.yaml`).
    TriggerName
);

/// Identifies one trigger across the whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TriggerKey {
    pub tenant: TenantName,
    pub trigger: TriggerName,
}

impl fmt::Display for TriggerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_path_rule() {
        assert!(TenantName::parse("acme").is_ok());
        assert!(TriggerName::parse("Item-Price_2").is_ok());
        assert_eq!(TenantName::parse(""), Err(NameError::Empty));
        assert!(matches!(
            TenantName::parse("_admin"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            TenantName::parse("a b"),
            Err(NameError::Invalid(_))
        ));
        assert!(matches!(
            TenantName::parse("-a"),
            Err(NameError::Invalid(_))
        ));
        assert!(matches!(
            TenantName::parse(&"a".repeat(65)),
            Err(NameError::TooLong(_))
        ));
        assert!(TenantName::parse(&"a".repeat(64)).is_ok());
    }
}
