//! The invalidation notice: what one process tells the others to drop, and its wire format
//! (the payload of a PostgreSQL `NOTIFY`).

use crate::backend::{Entry, EntryId};
use crate::tags::TagHash;

/// What an invalidation notice asks other processes to drop from their L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// One entry: its id, and its epoch stripe (so in-flight computations of it cannot store).
    Key { stripe: usize, id: EntryId },
    /// Every entry of the function.
    All,
    /// Every entry carrying the tag with this digest, of any function.
    Tag(TagHash),
    /// Every entry of every function (`clear_all`).
    Clear,
}

impl Notice {
    /// The notice that drops `entry`.
    pub(crate) fn of(entry: &Entry<'_>) -> Notice {
        Notice::Key {
            stripe: entry.stripe,
            id: entry.id,
        }
    }
}

/// A notice as sent: `origin|k|stripe|id|function`, `origin|a||function`, `origin|t||digest|`
/// or `origin|c|||`. It names an entry or a tag by its digest, never by its key, value or text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Payload<'a> {
    /// The sending runtime, so it can skip its own notices.
    pub(crate) origin: u64,
    pub(crate) function: &'a str,
    pub(crate) notice: Notice,
}

impl<'a> Payload<'a> {
    pub(crate) fn encode(&self) -> String {
        use std::fmt::Write;
        let mut text = format!("{:x}|", self.origin);
        let hex = |text: &mut String, bytes: &[u8; 32]| {
            for byte in bytes {
                let _ = write!(text, "{byte:02x}");
            }
        };
        match &self.notice {
            Notice::Key { stripe, id } => {
                let _ = write!(text, "k|{stripe}|");
                hex(&mut text, id);
            }
            Notice::All => text.push_str("a||"),
            Notice::Tag(hash) => {
                text.push_str("t||");
                hex(&mut text, hash);
            }
            Notice::Clear => text.push_str("c||"),
        }
        text.push('|');
        text.push_str(self.function);
        text
    }

    pub(crate) fn parse(text: &'a str) -> Option<Payload<'a>> {
        let mut fields = text.splitn(5, '|');
        let origin = u64::from_str_radix(fields.next()?, 16).ok()?;
        let kind = fields.next()?;
        let stripe = fields.next()?;
        let id = fields.next()?;
        let function = fields.next()?;
        let digest = || {
            let mut bytes = [0u8; 32];
            if id.len() != 64 {
                return None;
            }
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(bytes)
        };
        let notice = match kind {
            "a" => Notice::All,
            "c" => Notice::Clear,
            "t" => Notice::Tag(digest()?),
            "k" => Notice::Key {
                stripe: stripe.parse().ok()?,
                id: digest()?,
            },
            _ => return None,
        };
        Some(Payload {
            origin,
            function,
            notice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_rejected() {
        let key = Payload {
            origin: 0xfeed,
            function: "app::users|by id",
            notice: Notice::Key {
                stripe: 17,
                id: [7; 32],
            },
        };
        assert_eq!(Payload::parse(&key.encode()), Some(key));
        let all = Payload {
            origin: 1,
            function: "f",
            notice: Notice::All,
        };
        assert_eq!(Payload::parse(&all.encode()), Some(all));
        for notice in [Notice::Tag([9; 32]), Notice::Clear] {
            let payload = Payload {
                origin: 2,
                function: "",
                notice,
            };
            assert_eq!(Payload::parse(&payload.encode()), Some(payload));
        }
        for garbage in ["", "x|k|1|00|f", "1|k|1|00|f", "1|z||f", "1|k|x|", "1|t||00|"] {
            assert_eq!(Payload::parse(garbage), None, "{garbage:?}");
        }
    }
}
