//! The outbound encoder: a command to one JSON text frame.

use gateway_model::Command;

use crate::EncodeError;

/// The gateway closes a connection (4002) that sends a payload over this many bytes.
pub const MAX_OUTBOUND_PAYLOAD: usize = 4096;

/// Encodes a command as the text of one websocket frame, refusing anything over
/// [`MAX_OUTBOUND_PAYLOAD`] before it can be sent.
///
/// ```
/// use gateway_codec::encode;
/// use gateway_model::{Command, Heartbeat};
/// assert_eq!(encode(&Command::Heartbeat(Heartbeat(None)))?, r#"{"op":1,"d":null}"#);
/// # Ok::<(), gateway_codec::EncodeError>(())
/// ```
pub fn encode(command: &Command) -> Result<String, EncodeError> {
    let json = gateway_model::json::to_string(command)?;
    if json.len() > MAX_OUTBOUND_PAYLOAD {
        return Err(EncodeError::TooLarge {
            size: json.len(),
            limit: MAX_OUTBOUND_PAYLOAD,
        });
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::{Activity, UpdatePresence};

    #[test]
    fn oversize_is_an_error() {
        let presence =
            UpdatePresence::default().with_activities([Activity::playing("x".repeat(5000))]);
        let err = encode(&Command::UpdatePresence(presence)).unwrap_err();
        assert!(
            matches!(err, EncodeError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
        let fits = UpdatePresence::default().with_activities([Activity::playing("x".repeat(3900))]);
        assert!(encode(&Command::UpdatePresence(fits)).is_ok());
    }
}
