//! The invalidation notice: what one process tells the others to drop, and its wire format
//! (the payload of a PostgreSQL `NOTIFY`).

use crate::backend::{Entry, EntryId};

/// What an invalidation notice asks other processes to drop from their L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// One entry: its id, and its epoch stripe (so in-flight computations of it cannot store).
    Key { stripe: usize, id: EntryId },
    /// Every entry of the function.
    All,
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

/// A notice as sent: `origin|k|stripe|id|function` or `origin|a||function`. It names the entry
/// by its digest, never by its key or value.
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
        match &self.notice {
            Notice::Key { stripe, id } => {
                let _ = write!(text, "k|{stripe}|");
                for byte in id {
                    let _ = write!(text, "{byte:02x}");
                }
            }
            Notice::All => text.push_str("a||"),
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
        let notice = match kind {
            "a" => Notice::All,
            "k" if id.len() == 64 => {
                let mut bytes = [0u8; 32];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Notice::Key {
                    stripe: stripe.parse().ok()?,
                    id: bytes,
                }
            }
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
        for garbage in ["", "x|k|1|00|f", "1|k|1|00|f", "1|z||f", "1|k|x|"] {
            assert_eq!(Payload::parse(garbage), None, "{garbage:?}");
        }
    }
}
