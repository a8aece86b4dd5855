//! The presence a shard shows, remembered across connections.

use gateway_model::{Activity, Status, UpdatePresence};

/// A change to the presence: each `Some` replaces the stored value, each `None` keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// Unix milliseconds since the client went idle (`Some(None)` clears it).
    pub idle_since: Option<Option<u64>>,
    /// Whether to show as AFK.
    pub afk: Option<bool>,
    /// The activity (`Some(None)` clears it).
    pub activity: Option<Option<Activity>>,
    /// The status.
    pub status: Option<Status>,
}

impl PresenceUpdate {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.idle_since.is_none()
            && self.afk.is_none()
            && self.activity.is_none()
            && self.status.is_none()
    }
}

/// The presence state: unset until the first setting, then every field has a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PresenceState {
    presence: Option<UpdatePresence>,
}

impl PresenceState {
    /// The initial presence: none of the four given means no presence at IDENTIFY (hikari's rule);
    /// otherwise the ones not given take their defaults.
    pub(crate) fn initial(update: &PresenceUpdate) -> Self {
        let mut state = Self::default();
        if !update.is_empty() {
            state.merge(update);
        }
        state
    }

    /// Merges a partial update; returns the whole presence to send.
    pub(crate) fn merge(&mut self, update: &PresenceUpdate) -> UpdatePresence {
        let p = self.presence.get_or_insert_with(UpdatePresence::default);
        if let Some(since) = update.idle_since {
            p.since = since;
        }
        if let Some(afk) = update.afk {
            p.afk = afk;
        }
        if let Some(activity) = &update.activity {
            p.activities = activity.iter().cloned().collect();
        }
        if let Some(status) = update.status {
            p.status = status;
        }
        p.clone()
    }

    /// The whole presence after a partial update, leaving this one as it is.
    pub(crate) fn merged(&self, update: &PresenceUpdate) -> UpdatePresence {
        let mut next = self.clone();
        next.merge(update)
    }

    /// Takes `presence` as the one shown from now on.
    pub(crate) fn set(&mut self, presence: UpdatePresence) {
        self.presence = Some(presence);
    }

    /// The presence to send at IDENTIFY, if any was ever set.
    pub(crate) fn for_identify(&self) -> Option<UpdatePresence> {
        self.presence.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_initial_setting_sends_no_presence_then_updates_merge() {
        let mut s = PresenceState::initial(&PresenceUpdate::default());
        assert_eq!(s.for_identify(), None);
        let p = s.merge(&PresenceUpdate {
            status: Some(Status::Idle),
            ..Default::default()
        });
        assert_eq!(
            (p.status, p.afk, p.since, p.activities.len()),
            (Status::Idle, false, None, 0)
        );
        let p = s.merge(&PresenceUpdate {
            activity: Some(Some(Activity::playing("x"))),
            ..Default::default()
        });
        assert_eq!((p.status, p.activities.len()), (Status::Idle, 1));
        let p = s.merge(&PresenceUpdate {
            activity: Some(None),
            afk: Some(true),
            ..Default::default()
        });
        assert_eq!(
            (p.status, p.afk, p.activities.len()),
            (Status::Idle, true, 0)
        );
        assert_eq!(s.for_identify(), Some(p));
    }

    #[test]
    fn one_initial_setting_fills_the_rest_with_defaults() {
        let s = PresenceState::initial(&PresenceUpdate {
            afk: Some(true),
            ..Default::default()
        });
        let p = s.for_identify().unwrap();
        assert_eq!((p.status, p.afk, p.since), (Status::Online, true, None));
    }
}
