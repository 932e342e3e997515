//! Name rules for streams, subscriptions and shard readers (HServer's
//! identifier rule: a letter first, then letters, digits, `-` or `_`).

use tonic::Status;

use crate::errors::invalid_identifier;

/// Longest accepted name.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Checks an identifier; `what` names it in the error ("stream name", …).
pub(crate) fn identifier(what: &str, name: &str) -> Result<(), Status> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(invalid_identifier(what, name, "it is empty"));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(invalid_identifier(what, name, "it is too long"));
    }
    if !first.is_ascii_alphabetic() {
        return Err(invalid_identifier(
            what,
            name,
            "it must start with a letter",
        ));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(invalid_identifier(
            what,
            name,
            &format!("character {bad:?} is not allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "orders", "io_reader_0f3a", "A-b_9"] {
            assert!(identifier("stream name", ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in ["", "1abc", "_x", "a b", "a.b", "ü", long.as_str()] {
            assert!(identifier("stream name", bad).is_err(), "{bad}");
        }
    }
}
