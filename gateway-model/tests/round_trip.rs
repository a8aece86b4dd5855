//! Property tests: every command written and read back is the same command.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_model::*;
use proptest::prelude::*;

fn snowflake() -> impl Strategy<Value = Snowflake> {
    any::<u64>().prop_map(Snowflake::new)
}

fn activity() -> impl Strategy<Value = Activity> {
    (
        0u8..=5,
        ".{0,20}",
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
    )
        .prop_map(|(kind, name, url, state)| Activity {
            name,
            kind: ActivityType::from_value(kind).unwrap_or(ActivityType::Playing),
            url,
            state,
        })
}

fn presence() -> impl Strategy<Value = UpdatePresence> {
    (
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(activity(), 0..3),
        prop_oneof![
            Just(Status::Online),
            Just(Status::Dnd),
            Just(Status::Idle),
            Just(Status::Invisible),
            Just(Status::Offline)
        ],
        any::<bool>(),
    )
        .prop_map(|(since, activities, status, afk)| UpdatePresence {
            since,
            activities,
            status,
            afk,
        })
}

fn request_guild_members() -> impl Strategy<Value = RequestGuildMembers> {
    let selection = prop_oneof![
        (".{0,10}", 0u32..=100).prop_map(|(q, l)| (Some((q, l)), None)),
        proptest::collection::vec(snowflake(), 1..=100).prop_map(|ids| (None, Some(ids))),
    ];
    (
        snowflake(),
        selection,
        any::<bool>(),
        proptest::option::of("[a-z0-9]{0,32}"),
    )
        .prop_map(|(guild, (query, ids), presences, nonce)| {
            let mut b = RequestGuildMembers::builder(guild).presences(presences);
            if let Some((q, l)) = query {
                b = b.query(q, l);
            }
            if let Some(ids) = ids {
                b = b.user_ids(ids);
            }
            if let Some(n) = nonce {
                b = b.nonce(n);
            }
            b.build().unwrap()
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        proptest::option::of(any::<u64>()).prop_map(|s| Command::Heartbeat(Heartbeat(s))),
        (
            "[A-Za-z0-9._-]{1,72}",
            any::<u64>(),
            50u64..=250,
            proptest::option::of((0u32..64, 1u32..64)),
            proptest::option::of(presence())
        )
            .prop_map(|(token, intents, threshold, shard, presence)| {
                let mut identify =
                    Identify::new(Token::new(token), Intents::from_bits_retain(intents))
                        .with_large_threshold(LargeThreshold::new(threshold).unwrap());
                if let Some((a, b)) = shard {
                    identify = identify.with_shard(ShardId::new(a.min(b - 1), b).unwrap());
                }
                identify.presence = presence;
                Command::from(identify)
            }),
        presence().prop_map(Command::UpdatePresence),
        (
            snowflake(),
            proptest::option::of(snowflake()),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(guild_id, channel_id, self_mute, self_deaf)| {
                Command::UpdateVoiceState(UpdateVoiceState {
                    guild_id,
                    channel_id,
                    self_mute,
                    self_deaf,
                })
            }),
        ("[A-Za-z0-9._-]{1,72}", "[a-f0-9]{32}", any::<u64>()).prop_map(|(t, s, seq)| {
            Command::Resume(Resume {
                token: Token::new(t),
                session_id: s,
                seq,
            })
        }),
        request_guild_members().prop_map(Command::RequestGuildMembers),
        proptest::collection::vec(snowflake(), 0..5).prop_map(|guild_ids| {
            Command::RequestSoundboardSounds(RequestSoundboardSounds { guild_ids })
        }),
        (
            snowflake(),
            proptest::collection::vec(
                prop_oneof![
                    Just(ChannelInfoField::Status),
                    Just(ChannelInfoField::VoiceStartTime)
                ],
                0..3
            )
        )
            .prop_map(|(guild_id, fields)| Command::RequestChannelInfo(
                RequestChannelInfo { guild_id, fields }
            )),
    ]
}

proptest! {
    #[test]
    fn commands_round_trip(command in command()) {
        let json = json::to_string(&command).unwrap();
        prop_assert_eq!(Command::from_json(&json).unwrap(), command.clone());
        let op: sonic_rs::Value = sonic_rs::from_str(&json).unwrap();
        prop_assert_eq!(sonic_rs::JsonValueTrait::as_u64(&op["op"]), Some(command.op().value()));
    }

    #[test]
    fn raw_dispatches_keep_their_data(name in "[A-Z_]{1,30}", seq: u64, value in "[a-z]{0,10}") {
        let data = sonic_rs::to_string(&value).unwrap();
        let payload = Payload { op: OpCode::Dispatch, seq: Some(seq), event_name: Some(name.as_str().into()), data: Some(&data) };
        if let Some(GatewayEvent::Dispatch(d)) = GatewayEvent::from_payload(&payload, EventTypes::UNKNOWN).unwrap() {
            prop_assert_eq!(d.seq, seq);
            let DispatchEvent::Other(raw) = d.event else { return Err(TestCaseError::fail("typed")) };
            prop_assert_eq!(raw.deserialize::<String>().unwrap(), value);
        }
    }
}
