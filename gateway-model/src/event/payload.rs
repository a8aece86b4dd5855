//! The borrowed view of one received payload.

use std::borrow::Cow;

use crate::OpCode;

/// One received gateway payload, `{op, d, s, t}`, borrowed from the decoder's buffer.
///
/// `d` stays raw JSON text: the sequence number and event name are readable whether or not `d`
/// later parses into its typed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<'a> {
    /// `op`.
    pub op: OpCode,
    /// `s`: the sequence number, set on dispatches.
    pub seq: Option<u64>,
    /// `t`: the event name, set on dispatches. Borrowed unless the name had JSON escapes.
    pub event_name: Option<Cow<'a, str>>,
    /// `d` as JSON text; `None` when the key is missing or `null`.
    pub data: Option<&'a str>,
}
