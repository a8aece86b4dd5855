//! A world made from a seed: guilds, members, presences, channels and roles.
//!
//! Members are not stored: member `i` of guild `g` is drawn from the seed's ChaCha stream `g` at a
//! fixed word position, so a world of millions of members costs a few bytes per guild and any
//! member can be built on demand. The same seed gives the same bytes.

use gateway_model::{Snowflake, Status};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2021-01-01 in milliseconds since the Discord epoch: ids are drawn after it.
const ID_TIME_START: u64 = 1_609_459_200_000 - gateway_model::DISCORD_EPOCH_MS;
/// Ids are drawn over about five years.
const ID_TIME_SPAN: u64 = 5 * 365 * 24 * 3600 * 1000;
/// Words of the ChaCha stream each member draws from.
const WORDS_PER_MEMBER: u128 = 16;
/// Username stems; a prefix query on two letters matches roughly one member in 24.
const STEMS: [&str; 24] = [
    "ash", "birch", "cedar", "dune", "ember", "fern", "glade", "haze", "iris", "jade", "kite",
    "lark", "moss", "nova", "onyx", "pike", "quill", "reed", "sage", "tarn", "umber", "vale",
    "wren", "yarrow",
];

/// How to build a [`World`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldConfig {
    /// The seed every byte derives from.
    pub seed: u64,
    /// Member count of each guild, in order.
    pub guild_sizes: Vec<usize>,
    /// How many guilds (the last ones) start unavailable: in READY, but without a GUILD_CREATE
    /// until [`FakeGateway::make_available`](crate::FakeGateway::make_available).
    pub unavailable: usize,
}

impl WorldConfig {
    /// `guilds` guilds of `members` members each.
    pub fn uniform(seed: u64, guilds: usize, members: usize) -> Self {
        Self {
            seed,
            guild_sizes: vec![members; guilds],
            unavailable: 0,
        }
    }

    /// A mix like a real bot's: most guilds small, every tenth one large (above any
    /// `large_threshold`), the largest `members * 10`.
    pub fn mixed(seed: u64, guilds: usize, members: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006d_6978_6564);
        let guild_sizes = (0..guilds)
            .map(|i| {
                if i % 10 == 9 {
                    rng.random_range(members * 2..=members * 10).max(251)
                } else {
                    rng.random_range(2..=members.max(2))
                }
            })
            .collect();
        Self {
            seed,
            guild_sizes,
            unavailable: 0,
        }
    }
}

impl Default for WorldConfig {
    /// Seed 0, 8 guilds of 2 to 300 members, one of them large.
    fn default() -> Self {
        Self::mixed(0, 8, 300)
    }
}

/// A guild of the world.
#[derive(Debug, Clone)]
pub struct Guild {
    /// Its id; its shard is `(id >> 22) % shard_count`.
    pub id: Snowflake,
    /// Its name.
    pub name: String,
    /// Its member count.
    pub member_count: usize,
    /// Whether it starts unavailable.
    pub unavailable_at_start: bool,
    pub(crate) index: u64,
    pub(crate) owner: usize,
    pub(crate) role_ids: [Snowflake; 3],
    pub(crate) channel_ids: [Snowflake; 3],
}

/// A member, built on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id.
    pub id: Snowflake,
    /// The username, `{stem}{n}`: unique in the guild.
    pub username: String,
    /// The nickname, for some.
    pub nick: Option<String>,
    /// The presence status.
    pub status: Status,
    /// Indices into the guild's roles (0 = none beyond @everyone).
    pub role_count: usize,
    /// Whether it is a bot.
    pub bot: bool,
    /// Join time, ISO 8601.
    pub joined_at: String,
    /// The display name, for some.
    pub global_name: Option<String>,
    /// The avatar hash (32 hex digits, as Discord's), for most.
    pub avatar: Option<String>,
}

/// The generated world.
#[derive(Debug, Clone)]
pub struct World {
    config: WorldConfig,
    guilds: Vec<Guild>,
    /// The bot's user id.
    pub bot_id: Snowflake,
    /// The application id.
    pub application_id: Snowflake,
}

pub(crate) fn draw_id(rng: &mut ChaCha8Rng) -> Snowflake {
    let ms = ID_TIME_START + rng.random_range(0..ID_TIME_SPAN);
    Snowflake::new(ms << 22 | rng.random_range(0..1u64 << 22))
}

fn hex(rng: &mut ChaCha8Rng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

impl World {
    /// Builds the world.
    pub fn new(config: WorldConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let bot_id = draw_id(&mut rng);
        let application_id = draw_id(&mut rng);
        let n = config.guild_sizes.len();
        let guilds = config
            .guild_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Guild {
                id: draw_id(&mut rng),
                name: format!("{} {}", STEMS[i % STEMS.len()], i),
                member_count: size.max(1),
                unavailable_at_start: i >= n.saturating_sub(config.unavailable),
                index: i as u64,
                owner: rng.random_range(0..size.max(1)),
                role_ids: [draw_id(&mut rng), draw_id(&mut rng), draw_id(&mut rng)],
                channel_ids: [draw_id(&mut rng), draw_id(&mut rng), draw_id(&mut rng)],
            })
            .collect();
        Self {
            config,
            guilds,
            bot_id,
            application_id,
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Every guild.
    pub fn guilds(&self) -> &[Guild] {
        &self.guilds
    }

    /// A guild by id.
    pub fn guild(&self, id: Snowflake) -> Option<&Guild> {
        self.guilds.iter().find(|g| g.id == id)
    }

    /// The guilds of one shard.
    pub fn guilds_of_shard(&self, shard: u32, shard_count: u32) -> impl Iterator<Item = &Guild> {
        self.guilds
            .iter()
            .filter(move |g| g.id.shard_index(shard_count) == shard)
    }

    /// Member `index` of `guild` (`index < member_count`). Member 0 is the bot itself.
    pub fn member(&self, guild: &Guild, index: usize) -> Member {
        if index == 0 {
            return Member {
                id: self.bot_id,
                username: "testkit-bot".to_owned(),
                nick: None,
                status: Status::Online,
                role_count: 1,
                bot: true,
                joined_at: "2021-01-01T00:00:00.000000+00:00".to_owned(),
                global_name: None,
                avatar: None,
            };
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(guild.index + 1);
        rng.set_word_pos(index as u128 * WORDS_PER_MEMBER);
        let id = draw_id(&mut rng);
        let stem = STEMS[rng.random_range(0..STEMS.len())];
        let status = match rng.random_range(0..10) {
            0..=1 => Status::Online,
            2 => Status::Idle,
            3 => Status::Dnd,
            _ => Status::Offline,
        };
        let role_count = rng.random_range(0..=2usize);
        let nick = rng.random_bool(0.1).then(|| format!("{stem} the {index}"));
        let avatar = rng.random_bool(0.7).then(|| hex(&mut rng));
        let global_name = rng
            .random_bool(0.5)
            .then(|| format!("{}{} {index}", stem[..1].to_uppercase(), &stem[1..]));
        let day = rng.random_range(1..=28);
        let month = rng.random_range(1..=12);
        Member {
            id,
            username: format!("{stem}{index}"),
            nick,
            status,
            role_count,
            bot: false,
            joined_at: format!("2022-{month:02}-{day:02}T12:00:00.000000+00:00"),
            global_name,
            avatar,
        }
    }

    /// The members of a guild, in order.
    pub fn members<'a>(&'a self, guild: &'a Guild) -> impl Iterator<Item = Member> + 'a {
        (0..guild.member_count).map(move |i| self.member(guild, i))
    }

    /// A session id: 32 hex digits drawn from `nonce`.
    pub(crate) fn session_id(&self, nonce: u64) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x5e55_1011);
        rng.set_stream(nonce);
        hex(&mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::Intents;

    #[test]
    fn same_seed_same_world_and_bytes() {
        let a = World::new(WorldConfig::mixed(7, 20, 100));
        let b = World::new(WorldConfig::mixed(7, 20, 100));
        let c = World::new(WorldConfig::mixed(8, 20, 100));
        let g = &a.guilds()[3];
        assert_eq!(
            a.guild_create_json(g, Intents::all(), 50),
            b.guild_create_json(&b.guilds()[3], Intents::all(), 50)
        );
        assert_ne!(a.guilds()[3].id, c.guilds()[3].id);
        assert_eq!(a.member(g, 5), a.member(g, 5));
    }

    #[test]
    fn guild_create_reads_back_with_strict_fields() {
        let w = World::new(WorldConfig::uniform(1, 3, 400));
        let g = &w.guilds()[0];
        let json = w.guild_create_json(g, Intents::all(), 250);
        let typed = gateway_model::GuildCreate::from_json(&json).unwrap();
        assert_eq!(
            (typed.id, typed.member_count, typed.large),
            (g.id, Some(400), Some(true))
        );
        let v: sonic_rs::Value = sonic_rs::from_str(&json).unwrap();
        use sonic_rs::{JsonContainerTrait, JsonValueTrait};
        let m = &v["members"][0];
        for key in ["user", "roles", "joined_at", "deaf", "mute", "flags"] {
            assert!(m.get(key).is_some(), "{key}");
        }
        let members = v["members"].as_array().unwrap().len();
        assert!(
            members < 400 && members > 0,
            "a large guild sends online members only: {members}"
        );
        let no_presences = w.guild_create_json(g, Intents::GUILDS, 250);
        let v: sonic_rs::Value = sonic_rs::from_str(&no_presences).unwrap();
        assert_eq!(v["members"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn usernames_are_unique_in_a_guild() {
        let w = World::new(WorldConfig::uniform(3, 1, 2000));
        let g = &w.guilds()[0];
        let mut names: Vec<String> = w.members(g).map(|m| m.username).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 2000);
    }
}
