//! Which agent uuids the key files and the keyring accept.
//!
//! One rule for both formats (and for `keygen --uuid`), so a uuid that one
//! file accepts can never be refused by the other.

use super::Problem;

/// Longest uuid, in bytes: the wire carries the uuid in 33 bytes.
pub const UUID_MAX_LEN: usize = 33;

/// Checks that `uuid` can be used as an agent uuid in key files, the
/// keyring and file names.
///
/// Accepted: 1 to 33 ASCII letters, digits and `-`, `_`, `.`, `:`. Clients
/// use 32 hex digits and one letter; the wider set leaves room for test
/// rigs while keeping whitespace, `#` and `/` (which would break the file
/// formats and the default `--out` file name) out.
pub fn check_uuid(uuid: &str) -> Result<(), Problem> {
    let reason = if uuid.is_empty() {
        "it is empty"
    } else if uuid.len() > UUID_MAX_LEN {
        "it is longer than 33 bytes"
    } else if !uuid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        "only letters, digits and - _ . : are allowed"
    } else {
        return Ok(());
    };
    Err(Problem::BadUuid {
        uuid: uuid.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::UUID;

    #[test]
    fn uuid_rules() {
        assert!(check_uuid(UUID).is_ok());
        assert!(check_uuid("router-1.lab:x_y").is_ok());
        for bad in ["", "a b", "a/b", "#x", "*", &"a".repeat(34)] {
            assert!(
                matches!(check_uuid(bad), Err(Problem::BadUuid { .. })),
                "{bad:?}"
            );
        }
    }
}
