use super::*;

const GUILD: &str = r#"{"id":"1","name":"g","member_count":2,"channels":[{"id":"10","name":"a","type":0}],"threads":[{"id":"20","parent_id":"10","name":"t"}],"roles":[{"id":"1","name":"@everyone"}],"members":[{"user":{"id":"5","username":"u"},"roles":[],"nick":null},{"user":{"id":"6","username":"v"},"roles":[]}],"presences":[{"user":{"id":"5"},"status":"online","activities":[]}],"voice_states":[],"emojis":[],"stickers":[],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}"#;

fn cache() -> GuildCache {
    let mut c = GuildCache::new(CacheConfig::default());
    c.reset([1]);
    c.apply("GUILD_CREATE", GUILD).unwrap();
    c
}

fn json_of(c: &GuildCache) -> String {
    match c.guild(1) {
        Some(Slot::Available(g)) => g.to_json(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_untouched_guild_is_the_upstream_json() {
    assert_eq!(json_of(&cache()), GUILD);
}

#[test]
fn creates_updates_and_deletes_of_items() {
    let mut c = cache();
    c.apply(
        "CHANNEL_CREATE",
        r#"{"id":"11","guild_id":"1","name":"b","type":0}"#,
    )
    .unwrap();
    c.apply(
        "CHANNEL_UPDATE",
        r#"{"id":"10","guild_id":"1","name":"a2","type":0}"#,
    )
    .unwrap();
    c.apply(
        "GUILD_ROLE_CREATE",
        r#"{"guild_id":"1","role":{"id":"2","name":"mod"}}"#,
    )
    .unwrap();
    c.apply("GUILD_ROLE_DELETE", r#"{"guild_id":"1","role_id":"1"}"#)
        .unwrap();
    c.apply(
        "THREAD_DELETE",
        r#"{"id":"20","guild_id":"1","parent_id":"10","type":11}"#,
    )
    .unwrap();
    let json = json_of(&c);
    assert!(
        json.contains(
            r#""channels":[{"id":"10","name":"a2","type":0},{"id":"11","name":"b","type":0}]"#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#""roles":[{"id":"2","name":"mod"}]"#),
        "{json}"
    );
    assert!(json.contains(r#""threads":[]"#), "{json}");
}

#[test]
fn members_come_and_go_with_the_count_and_partial_updates_merge() {
    let mut c = cache();
    c.apply(
        "GUILD_MEMBER_ADD",
        r#"{"guild_id":"1","user":{"id":"7","username":"w"},"roles":[]}"#,
    )
    .unwrap();
    c.apply(
        "GUILD_MEMBER_UPDATE",
        r#"{"guild_id":"1","user":{"id":"5","username":"u"},"roles":["2"]}"#,
    )
    .unwrap();
    c.apply(
        "GUILD_MEMBER_REMOVE",
        r#"{"guild_id":"1","user":{"id":"6","username":"v"}}"#,
    )
    .unwrap();
    c.apply("PRESENCE_UPDATE", r#"{"guild_id":"1","user":{"id":"5","username":"renamed"},"status":"idle","activities":[]}"#).unwrap();
    let json = json_of(&c);
    assert!(json.contains(r#""member_count":2"#), "{json}");
    assert!(
        json.contains(r#"{"user":{"id":"5","username":"renamed"},"roles":["2"],"nick":null}"#),
        "{json}"
    );
    assert!(!json.contains(r#""id":"6""#), "{json}");
    assert!(
        json.contains(r#""presences":[{"user":{"id":"5"},"status":"idle","activities":[]}]"#),
        "{json}"
    );
    c.apply(
        "PRESENCE_UPDATE",
        r#"{"guild_id":"1","user":{"id":"5"},"status":"offline","activities":[]}"#,
    )
    .unwrap();
    assert!(json_of(&c).contains(r#""presences":[]"#));
}

#[test]
fn voice_states_emojis_and_outages() {
    let mut c = cache();
    c.apply("VOICE_STATE_UPDATE", r#"{"guild_id":"1","channel_id":"10","user_id":"5","member":{"user":{"id":"5"}},"session_id":"s"}"#).unwrap();
    assert!(
        json_of(&c)
            .contains(r#""voice_states":[{"channel_id":"10","user_id":"5","session_id":"s"}]"#)
    );
    c.apply(
        "VOICE_STATE_UPDATE",
        r#"{"guild_id":"1","channel_id":null,"user_id":"5","session_id":"s"}"#,
    )
    .unwrap();
    c.apply(
        "GUILD_EMOJIS_UPDATE",
        r#"{"guild_id":"1","emojis":[{"id":"30","name":"e"}]}"#,
    )
    .unwrap();
    let json = json_of(&c);
    assert!(
        json.contains(r#""voice_states":[]"#)
            && json.contains(r#""emojis":[{"id":"30","name":"e"}]"#),
        "{json}"
    );
    c.apply("GUILD_DELETE", r#"{"id":"1","unavailable":true}"#)
        .unwrap();
    assert_eq!(c.guild(1), Some(&Slot::Unavailable));
    c.apply("GUILD_DELETE", r#"{"id":"1"}"#).unwrap();
    assert_eq!(c.guild(1), None);
}

#[test]
fn a_new_upstream_session_says_which_guilds_are_gone() {
    let mut c = cache();
    assert_eq!(c.reset([2]), vec![1]);
    assert_eq!(c.guild(2), Some(&Slot::Unavailable));
}

#[test]
fn what_is_not_cached_is_sent_empty_and_unreadable_updates_are_errors() {
    let mut c = GuildCache::new(CacheConfig::without([Kind::Members, Kind::Presences]));
    c.apply("GUILD_CREATE", GUILD).unwrap();
    let json = json_of(&c);
    assert!(
        json.contains(r#""members":[]"#) && json.contains(r#""presences":[]"#),
        "{json}"
    );
    assert!(
        c.apply("CHANNEL_CREATE", r#"{"guild_id":"1","name":"no id"}"#)
            .is_err()
    );
    assert!(
        c.apply("MESSAGE_CREATE", "not even json").is_ok(),
        "not a cache event"
    );
}

#[test]
fn a_thread_sync_replaces_the_threads_of_the_channels_it_names_and_unreadable_ids_are_refused() {
    let mut c = cache();
    c.apply(
        "THREAD_CREATE",
        r#"{"id":"21","guild_id":"1","parent_id":"11","name":"other"}"#,
    )
    .unwrap();
    c.apply(
        "THREAD_LIST_SYNC",
        r#"{"guild_id":"1","channel_ids":["10"],"threads":[{"id":"22","parent_id":"10","name":"new"}],"members":[]}"#,
    )
    .unwrap();
    let json = json_of(&c);
    assert!(!json.contains(r#""id":"20""#), "{json}");
    assert!(
        json.contains(r#""id":"21""#),
        "a channel not named keeps its threads: {json}"
    );
    assert!(json.contains(r#""id":"22""#), "{json}");
    let broken = c.apply(
        "THREAD_LIST_SYNC",
        r#"{"guild_id":"1","channel_ids":["x"],"threads":[]}"#,
    );
    assert!(
        matches!(broken, Err(CacheError::NotAnObject { .. })),
        "{broken:?}"
    );
    assert_eq!(json_of(&c), json, "a refused sync changes nothing");
}
