//! The cache against the fake gateway's world: a guild's GUILD_CREATE as the world sends it,
//! then updates of every cached kind (built from the guild's own items), must come back equal,
//! as JSON, to that GUILD_CREATE with the same updates applied as Discord defines them (here by
//! a plain reference on `serde_json::Value`, written apart from the cache).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_model::Intents;
use gateway_proxy::cache::{CacheConfig, GuildCache, Slot};
use gateway_testkit::{World, WorldConfig};
use serde_json::{Value, json};

/// The reference: `guild` with one dispatch applied.
fn reference(guild: &mut Value, name: &str, d: &Value) {
    let strip = |item: &Value, keys: &[&str]| {
        let mut item = item.clone();
        for k in keys {
            item.as_object_mut().unwrap().remove(*k);
        }
        item
    };
    let list = |guild: &mut Value, key: &str| -> Vec<Value> {
        guild
            .as_object_mut()
            .unwrap()
            .entry(key)
            .or_insert(json!([]))
            .as_array()
            .unwrap()
            .clone()
    };
    let put = |guild: &mut Value, key: &str, items: Vec<Value>| {
        guild[key] = Value::Array(items);
    };
    let upsert = |guild: &mut Value, key: &str, id: &dyn Fn(&Value) -> Value, item: Value| {
        let mut items = list(guild, key);
        match items.iter().position(|i| id(i) == id(&item)) {
            Some(at) => items[at] = item,
            None => items.push(item),
        }
        put(guild, key, items);
    };
    let remove = |guild: &mut Value, key: &str, id: &dyn Fn(&Value) -> Value, gone: &Value| {
        let items = list(guild, key)
            .into_iter()
            .filter(|i| &id(i) != gone)
            .collect();
        put(guild, key, items);
    };
    let by_id = |v: &Value| v["id"].clone();
    let by_user = |v: &Value| v["user"]["id"].clone();
    match name {
        "GUILD_UPDATE" => {
            for (k, v) in d.as_object().unwrap() {
                guild[k] = v.clone();
            }
        }
        "CHANNEL_CREATE" | "CHANNEL_UPDATE" => {
            upsert(guild, "channels", &by_id, strip(d, &["guild_id"]))
        }
        "CHANNEL_DELETE" => remove(guild, "channels", &by_id, &d["id"]),
        "THREAD_CREATE" | "THREAD_UPDATE" => {
            upsert(guild, "threads", &by_id, strip(d, &["guild_id"]))
        }
        "THREAD_DELETE" => remove(guild, "threads", &by_id, &d["id"]),
        "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => {
            upsert(guild, "roles", &by_id, d["role"].clone())
        }
        "GUILD_ROLE_DELETE" => remove(guild, "roles", &by_id, &d["role_id"]),
        "GUILD_MEMBER_ADD" => {
            guild["member_count"] = json!(guild["member_count"].as_u64().unwrap() + 1);
            upsert(guild, "members", &by_user, strip(d, &["guild_id"]));
        }
        "GUILD_MEMBER_UPDATE" => {
            let mut items = list(guild, "members");
            let at = items.iter().position(|m| by_user(m) == by_user(d)).unwrap();
            for (k, v) in d.as_object().unwrap() {
                if k != "guild_id" {
                    items[at][k] = v.clone();
                }
            }
            put(guild, "members", items);
        }
        "GUILD_MEMBER_REMOVE" => {
            guild["member_count"] = json!(guild["member_count"].as_u64().unwrap() - 1);
            remove(guild, "members", &by_user, &d["user"]["id"]);
            remove(guild, "presences", &by_user, &d["user"]["id"]);
        }
        "PRESENCE_UPDATE" => {
            let mut items = list(guild, "members");
            if let Some(at) = items.iter().position(|m| by_user(m) == by_user(d)) {
                for (k, v) in d["user"].as_object().unwrap() {
                    items[at]["user"][k] = v.clone();
                }
            }
            put(guild, "members", items);
            if d["status"] == "offline" {
                remove(guild, "presences", &by_user, &d["user"]["id"]);
            } else {
                let mut p = strip(d, &["guild_id"]);
                p["user"] = json!({ "id": d["user"]["id"] });
                let mut items = list(guild, "presences");
                match items.iter().position(|i| by_user(i) == by_user(&p)) {
                    Some(at) => {
                        for (k, v) in p.as_object().unwrap() {
                            items[at][k] = v.clone();
                        }
                    }
                    None => items.push(p),
                }
                put(guild, "presences", items);
            }
        }
        "VOICE_STATE_UPDATE" => {
            let by = |v: &Value| v["user_id"].clone();
            if d["channel_id"].is_null() {
                remove(guild, "voice_states", &by, &d["user_id"]);
            } else {
                upsert(
                    guild,
                    "voice_states",
                    &by,
                    strip(d, &["guild_id", "member"]),
                );
            }
        }
        "GUILD_EMOJIS_UPDATE" => guild["emojis"] = d["emojis"].clone(),
        "GUILD_STICKERS_UPDATE" => guild["stickers"] = d["stickers"].clone(),
        "STAGE_INSTANCE_CREATE" => upsert(guild, "stage_instances", &by_id, d.clone()),
        "GUILD_SCHEDULED_EVENT_CREATE" => {
            upsert(guild, "guild_scheduled_events", &by_id, d.clone())
        }
        "GUILD_SCHEDULED_EVENT_DELETE" => remove(guild, "guild_scheduled_events", &by_id, &d["id"]),
        "GUILD_SOUNDBOARD_SOUND_CREATE" => {
            upsert(
                guild,
                "soundboard_sounds",
                &|v| v["sound_id"].clone(),
                d.clone(),
            );
        }
        "GUILD_SOUNDBOARD_SOUND_DELETE" => {
            remove(
                guild,
                "soundboard_sounds",
                &|v| v["sound_id"].clone(),
                &d["sound_id"],
            );
        }
        other => panic!("no reference for {other}"),
    }
}

/// Updates of every cached kind for `guild`, built from its own items.
fn updates(world: &World, g: &gateway_testkit::Guild, guild: &Value) -> Vec<(&'static str, Value)> {
    let id = guild["id"].clone();
    let channel = guild["channels"][0].clone();
    let role = guild["roles"][1].clone();
    let member = guild["members"][1].clone();
    let leaving = guild["members"][2].clone();
    let user = member["user"]["id"].clone();
    let presence: Value = serde_json::from_str(&world.presence_update_json(g, 3)).unwrap();
    let mut renamed = channel.clone();
    renamed["name"] = json!("renamed");
    renamed["guild_id"] = id.clone();
    let mut recolored = role.clone();
    recolored["color"] = json!(123);
    let mut offline: Value = presence.clone();
    offline["status"] = json!("offline");
    vec![
        (
            "GUILD_UPDATE",
            json!({"id": id, "name": "new name", "description": "changed", "new_field": {"kept": [1, 2]}}),
        ),
        ("CHANNEL_UPDATE", renamed),
        (
            "CHANNEL_CREATE",
            json!({"id": "900000000000000001", "guild_id": id, "type": 0, "name": "new", "position": 9}),
        ),
        (
            "CHANNEL_DELETE",
            json!({"id": guild["channels"][1]["id"], "guild_id": id, "type": 0}),
        ),
        (
            "THREAD_CREATE",
            json!({"id": "900000000000000002", "guild_id": id, "parent_id": channel["id"], "type": 11, "name": "t"}),
        ),
        (
            "THREAD_CREATE",
            json!({"id": "900000000000000003", "guild_id": id, "parent_id": channel["id"], "type": 11, "name": "u"}),
        ),
        (
            "THREAD_DELETE",
            json!({"id": "900000000000000002", "guild_id": id, "parent_id": channel["id"], "type": 11}),
        ),
        (
            "GUILD_ROLE_UPDATE",
            json!({"guild_id": id, "role": recolored}),
        ),
        (
            "GUILD_ROLE_CREATE",
            json!({"guild_id": id, "role": {"id": "900000000000000004", "name": "new", "position": 3, "permissions": "0"}}),
        ),
        (
            "GUILD_ROLE_DELETE",
            json!({"guild_id": id, "role_id": guild["roles"][2]["id"]}),
        ),
        (
            "GUILD_MEMBER_ADD",
            json!({"guild_id": id, "user": {"id": "900000000000000005", "username": "new"}, "roles": [], "joined_at": "2026-12-03T00:00:00+00:00", "deaf": false, "mute": false}),
        ),
        (
            "GUILD_MEMBER_UPDATE",
            json!({"guild_id": id, "user": member["user"], "roles": [role["id"]], "nick": "nick"}),
        ),
        (
            "GUILD_MEMBER_REMOVE",
            json!({"guild_id": id, "user": leaving["user"]}),
        ),
        ("PRESENCE_UPDATE", presence),
        ("PRESENCE_UPDATE", offline),
        (
            "VOICE_STATE_UPDATE",
            json!({"guild_id": id, "channel_id": channel["id"], "user_id": user, "session_id": "s", "deaf": false, "mute": false, "self_deaf": false, "self_mute": false, "self_video": false, "suppress": false, "request_to_speak_timestamp": null, "member": member}),
        ),
        (
            "VOICE_STATE_UPDATE",
            json!({"guild_id": id, "channel_id": channel["id"], "user_id": "900000000000000005", "session_id": "t", "deaf": false, "mute": false}),
        ),
        (
            "VOICE_STATE_UPDATE",
            json!({"guild_id": id, "channel_id": null, "user_id": "900000000000000005", "session_id": "t"}),
        ),
        (
            "GUILD_EMOJIS_UPDATE",
            json!({"guild_id": id, "emojis": [{"id": "900000000000000006", "name": "e", "roles": [], "animated": false}]}),
        ),
        (
            "GUILD_STICKERS_UPDATE",
            json!({"guild_id": id, "stickers": [{"id": "900000000000000007", "name": "s", "guild_id": id, "format_type": 1}]}),
        ),
        (
            "STAGE_INSTANCE_CREATE",
            json!({"id": "900000000000000008", "guild_id": id, "channel_id": channel["id"], "topic": "t", "privacy_level": 2}),
        ),
        (
            "GUILD_SCHEDULED_EVENT_CREATE",
            json!({"id": "900000000000000009", "guild_id": id, "name": "e", "status": 1, "entity_type": 3}),
        ),
        (
            "GUILD_SCHEDULED_EVENT_CREATE",
            json!({"id": "900000000000000010", "guild_id": id, "name": "f", "status": 1, "entity_type": 3}),
        ),
        (
            "GUILD_SCHEDULED_EVENT_DELETE",
            json!({"id": "900000000000000009", "guild_id": id}),
        ),
        (
            "GUILD_SOUNDBOARD_SOUND_CREATE",
            json!({"sound_id": "900000000000000011", "guild_id": id, "name": "s", "volume": 1.0, "available": true}),
        ),
        (
            "GUILD_SOUNDBOARD_SOUND_CREATE",
            json!({"sound_id": "900000000000000012", "guild_id": id, "name": "t", "volume": 1.0, "available": true}),
        ),
        (
            "GUILD_SOUNDBOARD_SOUND_DELETE",
            json!({"sound_id": "900000000000000011", "guild_id": id}),
        ),
    ]
}

#[test]
fn a_synthetic_guild_create_equals_the_upstream_one_after_every_kind_of_update() {
    let world = World::new(WorldConfig::mixed(7, 20, 300));
    for g in world
        .guilds()
        .iter()
        .filter(|g| g.member_count >= 3)
        .take(5)
    {
        let json = world.guild_create_json(g, Intents::all(), 250);
        let mut expected: Value = serde_json::from_str(&json).unwrap();
        let mut cache = GuildCache::new(CacheConfig::default());
        cache.apply("GUILD_CREATE", &json).unwrap();
        let id = g.id.get();
        let cached = |cache: &GuildCache| match cache.guild(id) {
            Some(Slot::Available(guild)) => guild.to_json(),
            other => panic!("{other:?}"),
        };
        assert_eq!(cached(&cache), json, "untouched: byte for byte");
        for (name, d) in updates(&world, g, &expected.clone()) {
            cache.apply(name, &d.to_string()).unwrap();
            reference(&mut expected, name, &d);
            let got: Value = serde_json::from_str(&cached(&cache)).unwrap();
            assert_eq!(got, expected, "guild {id} after {name}");
        }
    }
}
