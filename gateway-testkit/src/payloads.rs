//! The JSON the world is sent as, in the shapes Discord sends today (roles with `colors`, users
//! with `global_name`, 32-digit image hashes, the READY fields clients read), built from typed
//! structs rather than string literals.

use gateway_model::{Intents, Snowflake, Status};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::world::{Guild, Member, World, draw_id};

#[derive(Serialize)]
pub(crate) struct UserJson<'a> {
    id: Snowflake,
    username: &'a str,
    discriminator: &'a str,
    global_name: Option<&'a str>,
    avatar: Option<&'a str>,
    bot: bool,
    public_flags: u64,
    banner: Option<&'a str>,
    accent_color: Option<u32>,
    avatar_decoration_data: Option<()>,
    collectibles: Option<()>,
    primary_guild: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
}

/// A guild member as GUILD_CREATE and GUILD_MEMBERS_CHUNK carry it: MESSAGE_CREATE's member
/// plus the user.
#[derive(Serialize)]
pub(crate) struct MemberJson<'a> {
    user: UserJson<'a>,
    #[serde(flatten)]
    member: MessageMemberJson<'a>,
}

#[derive(Serialize)]
struct PartialUserJson {
    id: Snowflake,
}

#[derive(Serialize)]
struct ClientStatusJson {
    desktop: Status,
}

#[derive(Serialize)]
pub(crate) struct PresenceJson {
    user: PartialUserJson,
    status: Status,
    activities: [(); 0],
    client_status: ClientStatusJson,
}

impl Member {
    pub(crate) fn presence_json(&self) -> PresenceJson {
        PresenceJson {
            user: PartialUserJson { id: self.id },
            status: self.status,
            activities: [],
            client_status: ClientStatusJson {
                desktop: self.status,
            },
        }
    }

    fn user_json(&self) -> UserJson<'_> {
        UserJson {
            id: self.id,
            username: &self.username,
            discriminator: "0",
            global_name: self.global_name.as_deref(),
            avatar: self.avatar.as_deref(),
            bot: self.bot,
            public_flags: 0,
            banner: None,
            accent_color: None,
            avatar_decoration_data: None,
            collectibles: None,
            primary_guild: None,
            email: None,
            mfa_enabled: None,
            verified: None,
            flags: None,
        }
    }

    pub(crate) fn json<'a>(&'a self, guild: &'a Guild) -> MemberJson<'a> {
        MemberJson {
            user: self.user_json(),
            member: World::message_member(guild, self),
        }
    }
}

/// A role's gradient colours (sent since 2025; `color` is the primary, kept for old clients).
#[derive(Serialize)]
struct RoleColorsJson {
    primary_color: u32,
    secondary_color: Option<u32>,
    tertiary_color: Option<u32>,
}

#[derive(Serialize)]
struct RoleJson<'a> {
    id: Snowflake,
    name: &'a str,
    description: Option<&'a str>,
    color: u32,
    colors: RoleColorsJson,
    hoist: bool,
    icon: Option<&'a str>,
    unicode_emoji: Option<&'a str>,
    position: u32,
    permissions: &'a str,
    managed: bool,
    mentionable: bool,
    flags: u64,
}

#[derive(Serialize)]
struct ChannelJson<'a> {
    id: Snowflake,
    #[serde(rename = "type")]
    kind: u8,
    name: &'a str,
    position: u32,
    permission_overwrites: [(); 0],
    parent_id: Option<Snowflake>,
    nsfw: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message_id: Option<Option<Snowflake>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_per_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bitrate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtc_region: Option<Option<&'a str>>,
}

#[derive(Serialize)]
struct GuildCreateJson<'a> {
    id: Snowflake,
    name: &'a str,
    icon: Option<&'a str>,
    splash: Option<&'a str>,
    discovery_splash: Option<&'a str>,
    owner_id: Snowflake,
    afk_channel_id: Option<Snowflake>,
    afk_timeout: u32,
    verification_level: u8,
    default_message_notifications: u8,
    explicit_content_filter: u8,
    roles: Vec<RoleJson<'a>>,
    emojis: [(); 0],
    features: [(); 0],
    mfa_level: u8,
    application_id: Option<Snowflake>,
    system_channel_id: Option<Snowflake>,
    system_channel_flags: u64,
    rules_channel_id: Option<Snowflake>,
    max_members: u32,
    max_presences: Option<u32>,
    region: Option<&'a str>,
    widget_enabled: bool,
    widget_channel_id: Option<Snowflake>,
    nsfw: bool,
    hub_type: Option<u8>,
    incidents_data: Option<()>,
    embedded_activities: [(); 0],
    activity_instances: [(); 0],
    lazy: bool,
    vanity_url_code: Option<&'a str>,
    description: Option<&'a str>,
    banner: Option<&'a str>,
    premium_tier: u8,
    premium_subscription_count: u32,
    preferred_locale: &'a str,
    public_updates_channel_id: Option<Snowflake>,
    max_video_channel_users: u32,
    nsfw_level: u8,
    stickers: [(); 0],
    premium_progress_bar_enabled: bool,
    safety_alerts_channel_id: Option<Snowflake>,
    joined_at: &'a str,
    large: bool,
    unavailable: bool,
    member_count: usize,
    voice_states: [(); 0],
    members: Vec<MemberJson<'a>>,
    channels: Vec<ChannelJson<'a>>,
    threads: [(); 0],
    presences: Vec<PresenceJson>,
    stage_instances: [(); 0],
    guild_scheduled_events: [(); 0],
    soundboard_sounds: [(); 0],
}

#[derive(Serialize)]
struct UnavailableJson {
    id: Snowflake,
    unavailable: bool,
}

#[derive(Serialize)]
struct ApplicationJson {
    id: Snowflake,
    flags: u64,
}

#[derive(Serialize)]
struct CurrentApplicationJson<'a> {
    id: Snowflake,
    name: &'a str,
    icon: Option<&'a str>,
    description: &'a str,
    summary: &'a str,
    r#type: Option<u8>,
    bot_public: bool,
    bot_require_code_grant: bool,
    verify_key: &'a str,
    flags: u64,
    owner: UserJson<'a>,
    team: Option<()>,
    bot: UserJson<'a>,
    rpc_origins: [(); 0],
    redirect_uris: [(); 0],
    tags: [(); 0],
    approximate_guild_count: usize,
    approximate_user_install_count: usize,
    interactions_endpoint_url: Option<&'a str>,
    integration_types_config: EmptyJson,
}

#[derive(Serialize)]
struct ReadyJson<'a> {
    v: u8,
    user: UserJson<'a>,
    guilds: Vec<UnavailableJson>,
    session_id: &'a str,
    resume_gateway_url: &'a str,
    shard: [u32; 2],
    application: ApplicationJson,
    session_type: &'a str,
    auth: EmptyJson,
    #[serde(rename = "_trace")]
    trace: [&'a str; 1],
    private_channels: [(); 0],
    relationships: [(); 0],
    presences: [(); 0],
    guild_join_requests: [(); 0],
    user_settings: EmptyJson,
    geo_ordered_rtc_regions: [&'a str; 2],
}

/// `{}`.
#[derive(Serialize)]
struct EmptyJson {}

/// Application flags telling which privileged intents the application may use.
pub(crate) fn application_flags(allowed: Intents) -> u64 {
    let mut flags = 0;
    if allowed.contains(Intents::GUILD_PRESENCES) {
        flags |= 1 << 12;
    }
    if allowed.contains(Intents::GUILD_MEMBERS) {
        flags |= 1 << 14;
    }
    if allowed.contains(Intents::MESSAGE_CONTENT) {
        flags |= 1 << 18;
    }
    flags
}

#[derive(Serialize)]
struct MessageJson<'a> {
    id: Snowflake,
    channel_id: Snowflake,
    guild_id: Snowflake,
    author: UserJson<'a>,
    member: MessageMemberJson<'a>,
    content: &'a str,
    timestamp: &'a str,
    edited_timestamp: Option<&'a str>,
    tts: bool,
    mention_everyone: bool,
    mentions: [(); 0],
    mention_roles: [(); 0],
    attachments: [(); 0],
    embeds: [(); 0],
    pinned: bool,
    #[serde(rename = "type")]
    kind: u8,
    flags: u64,
    components: [(); 0],
    nonce: String,
    channel_type: u8,
}

/// A guild member without its user, as MESSAGE_CREATE and TYPING_START carry it.
#[derive(Serialize)]
struct MessageMemberJson<'a> {
    roles: &'a [Snowflake],
    joined_at: &'a str,
    nick: Option<&'a str>,
    deaf: bool,
    mute: bool,
    flags: u64,
    premium_since: Option<&'a str>,
    avatar: Option<&'a str>,
    banner: Option<&'a str>,
    pending: bool,
    communication_disabled_until: Option<&'a str>,
}

#[derive(Serialize)]
struct PresenceUpdateJson<'a> {
    user: PartialUserJson,
    guild_id: Snowflake,
    status: Status,
    activities: Vec<ActivityJson<'a>>,
    client_status: ClientStatusJson,
}

#[derive(Serialize)]
struct ActivityJson<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: u8,
    created_at: u64,
    state: Option<&'a str>,
}

#[derive(Serialize)]
struct TypingJson<'a> {
    channel_id: Snowflake,
    guild_id: Snowflake,
    user_id: Snowflake,
    timestamp: u64,
    /// A full guild member, its user included.
    member: MemberJson<'a>,
}

impl World {
    fn message_member<'a>(guild: &'a Guild, m: &'a Member) -> MessageMemberJson<'a> {
        MessageMemberJson {
            roles: &guild.role_ids[1..1 + m.role_count],
            joined_at: &m.joined_at,
            nick: m.nick.as_deref(),
            deaf: false,
            mute: false,
            flags: 0,
            premium_since: None,
            avatar: None,
            banner: None,
            pending: false,
            communication_disabled_until: None,
        }
    }

    /// MESSAGE_CREATE's `d`: message `n` in `guild`'s first channel by one of its members, with
    /// `content_len` characters of content.
    pub fn message_create_json(&self, guild: &Guild, n: u64, content_len: usize) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config().seed ^ 0x6d73_6700);
        rng.set_stream(n);
        let author = self.member(guild, rng.random_range(0..guild.member_count));
        let words = [
            "gateway",
            "shard",
            "resume",
            "chunk",
            "heartbeat",
            "zlib",
            "presence",
            "guild",
        ];
        let mut content = String::with_capacity(content_len + 16);
        while content.len() < content_len {
            content.push_str(words[rng.random_range(0..words.len())]);
            content.push(' ');
        }
        content.truncate(content_len);
        let json = MessageJson {
            id: draw_id(&mut rng),
            channel_id: guild.channel_ids[0],
            guild_id: guild.id,
            author: author.user_json(),
            member: Self::message_member(guild, &author),
            content: &content,
            timestamp: "2026-11-22T12:00:00.000000+00:00",
            edited_timestamp: None,
            tts: false,
            mention_everyone: false,
            mentions: [],
            mention_roles: [],
            attachments: [],
            embeds: [],
            pinned: false,
            kind: 0,
            flags: 0,
            components: [],
            nonce: rng.random::<u64>().to_string(),
            channel_type: 0,
        };
        sonic_rs::to_string(&json).unwrap_or_default()
    }

    /// PRESENCE_UPDATE's `d` for member `index` of `guild`.
    pub fn presence_update_json(&self, guild: &Guild, index: usize) -> String {
        let m = self.member(guild, index % guild.member_count);
        let activities = if m.status == Status::Offline {
            Vec::new()
        } else {
            vec![ActivityJson {
                name: "Custom Status",
                kind: 4,
                created_at: 1_763_812_800_000,
                state: Some("testing"),
            }]
        };
        let json = PresenceUpdateJson {
            user: PartialUserJson { id: m.id },
            guild_id: guild.id,
            status: m.status,
            activities,
            client_status: ClientStatusJson { desktop: m.status },
        };
        sonic_rs::to_string(&json).unwrap_or_default()
    }

    /// TYPING_START's `d` for member `index` of `guild`.
    pub fn typing_start_json(&self, guild: &Guild, index: usize) -> String {
        let m = self.member(guild, index % guild.member_count);
        let json = TypingJson {
            channel_id: guild.channel_ids[0],
            guild_id: guild.id,
            user_id: m.id,
            timestamp: 1_763_812_800,
            member: m.json(guild),
        };
        sonic_rs::to_string(&json).unwrap_or_default()
    }

    /// `{"id": …, "unavailable": true}`: the `d` of a GUILD_CREATE for a guild that is still
    /// unavailable, and of a GUILD_DELETE during an outage (READY lists guilds in this shape).
    pub fn unavailable_guild_json(&self, guild: &Guild) -> String {
        sonic_rs::to_string(&UnavailableJson {
            id: guild.id,
            unavailable: true,
        })
        .unwrap_or_default()
    }

    /// GUILD_DELETE's `d` when the bot left or was removed from `guild`: `{"id": …}`, no
    /// `unavailable`.
    pub fn guild_removed_json(&self, guild: &Guild) -> String {
        sonic_rs::to_string(&PartialUserJson { id: guild.id }).unwrap_or_default()
    }

    /// The bot's user, as READY and `GET /users/@me` give it.
    pub(crate) fn bot_user(&self) -> UserJson<'static> {
        UserJson {
            id: self.bot_id,
            username: "testkit-bot",
            discriminator: "0000",
            global_name: None,
            avatar: None,
            bot: true,
            public_flags: 0,
            banner: None,
            accent_color: None,
            avatar_decoration_data: None,
            collectibles: None,
            primary_guild: None,
            email: Some(None),
            mfa_enabled: Some(false),
            verified: Some(true),
            flags: Some(0),
        }
    }

    /// `GET /users/@me` for the bot: the user READY carries.
    pub fn current_user_json(&self) -> String {
        sonic_rs::to_string(&self.bot_user()).unwrap_or_default()
    }

    /// `GET /oauth2/applications/@me`: the bot's application, owned by a user of its own, no
    /// team, with the flags of the privileged intents `allowed`.
    pub fn current_application_json(&self, allowed: Intents) -> String {
        let mut owner = self.bot_user();
        owner.id = Snowflake::new(self.application_id.get().wrapping_add(1));
        owner.username = "testkit-owner";
        owner.bot = false;
        let application = CurrentApplicationJson {
            id: self.application_id,
            name: "testkit",
            icon: None,
            description: "",
            summary: "",
            r#type: None,
            bot_public: true,
            bot_require_code_grant: false,
            verify_key: "0000000000000000000000000000000000000000000000000000000000000000",
            flags: application_flags(allowed),
            owner,
            team: None,
            bot: self.bot_user(),
            rpc_origins: [],
            redirect_uris: [],
            tags: [],
            approximate_guild_count: self.guilds().len(),
            approximate_user_install_count: 0,
            interactions_endpoint_url: None,
            integration_types_config: EmptyJson {},
        };
        sonic_rs::to_string(&application).unwrap_or_default()
    }

    /// READY's `d` for one shard.
    pub fn ready_json(
        &self,
        session_id: &str,
        resume_url: &str,
        shard: [u32; 2],
        allowed: Intents,
    ) -> String {
        let user = self.bot_user();
        let ready = ReadyJson {
            v: 10,
            user,
            guilds: self
                .guilds_of_shard(shard[0], shard[1])
                .map(|g| UnavailableJson {
                    id: g.id,
                    unavailable: true,
                })
                .collect(),
            session_id,
            resume_gateway_url: resume_url,
            shard,
            application: ApplicationJson {
                id: self.application_id,
                flags: application_flags(allowed),
            },
            session_type: "normal",
            auth: EmptyJson {},
            trace: ["[\"gateway-testkit\",{\"micros\":0}]"],
            private_channels: [],
            relationships: [],
            presences: [],
            guild_join_requests: [],
            user_settings: EmptyJson {},
            geo_ordered_rtc_regions: ["loopback", "localhost"],
        };
        sonic_rs::to_string(&ready).unwrap_or_default()
    }

    /// GUILD_CREATE's `d`, as a session with `intents` and `large_threshold` receives it: all
    /// members of a small guild; for a large one, only members who are not offline; without
    /// GUILD_PRESENCES, only the bot itself.
    pub fn guild_create_json(
        &self,
        guild: &Guild,
        intents: Intents,
        large_threshold: usize,
    ) -> String {
        let large = guild.member_count > large_threshold;
        let presences_allowed = intents.contains(Intents::GUILD_PRESENCES);
        let members: Vec<Member> = if !presences_allowed {
            vec![self.member(guild, 0)]
        } else {
            self.members(guild)
                .filter(|m| !large || m.status != Status::Offline)
                .collect()
        };
        let presences = if presences_allowed {
            members
                .iter()
                .filter(|m| m.status != Status::Offline)
                .map(Member::presence_json)
                .collect()
        } else {
            Vec::new()
        };
        let role = |i: usize, name, position, color| RoleJson {
            id: guild.role_ids[i],
            name,
            description: None,
            color,
            colors: RoleColorsJson {
                primary_color: color,
                secondary_color: None,
                tertiary_color: None,
            },
            hoist: false,
            icon: None,
            unicode_emoji: None,
            position,
            permissions: "1071698660929",
            managed: false,
            mentionable: false,
            flags: 0,
        };
        let roles = vec![
            RoleJson {
                id: guild.id,
                ..role(0, "@everyone", 0, 0)
            },
            role(1, "member", 1, 0x2e_cc71),
            role(2, "moderator", 2, 0xe6_7e22),
        ];
        let text = |i: usize, name, position| ChannelJson {
            id: guild.channel_ids[i],
            kind: 0,
            name,
            position,
            permission_overwrites: [],
            parent_id: None,
            nsfw: false,
            topic: Some(None),
            last_message_id: Some(None),
            rate_limit_per_user: Some(0),
            bitrate: None,
            user_limit: None,
            rtc_region: None,
        };
        let channels = vec![
            text(0, "general", 0),
            text(1, "random", 1),
            ChannelJson {
                kind: 2,
                topic: None,
                last_message_id: None,
                rate_limit_per_user: None,
                bitrate: Some(64000),
                user_limit: Some(0),
                rtc_region: Some(None),
                ..text(2, "voice", 2)
            },
        ];
        let owner = self.member(guild, guild.owner);
        let json = GuildCreateJson {
            id: guild.id,
            name: &guild.name,
            icon: None,
            splash: None,
            discovery_splash: None,
            owner_id: owner.id,
            afk_channel_id: None,
            afk_timeout: 300,
            verification_level: 0,
            default_message_notifications: 0,
            explicit_content_filter: 0,
            roles,
            emojis: [],
            features: [],
            mfa_level: 0,
            application_id: None,
            system_channel_id: Some(guild.channel_ids[0]),
            system_channel_flags: 0,
            rules_channel_id: None,
            max_members: 500_000,
            max_presences: None,
            region: None,
            widget_enabled: false,
            widget_channel_id: None,
            nsfw: false,
            hub_type: None,
            incidents_data: None,
            embedded_activities: [],
            activity_instances: [],
            lazy: true,
            vanity_url_code: None,
            description: None,
            banner: None,
            premium_tier: 0,
            premium_subscription_count: 0,
            preferred_locale: "en-US",
            public_updates_channel_id: None,
            max_video_channel_users: 25,
            nsfw_level: 0,
            stickers: [],
            premium_progress_bar_enabled: false,
            safety_alerts_channel_id: None,
            joined_at: "2021-01-01T00:00:00.000000+00:00",
            large,
            unavailable: false,
            member_count: guild.member_count,
            voice_states: [],
            members: members.iter().map(|m| m.json(guild)).collect(),
            channels,
            threads: [],
            presences,
            stage_instances: [],
            guild_scheduled_events: [],
            soundboard_sounds: [],
        };
        sonic_rs::to_string(&json).unwrap_or_default()
    }
}
