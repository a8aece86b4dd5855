//! The decode corpus: a deterministic mix of gateway traffic from the testkit's world generator.

use gateway_model::{Intents, RequestGuildMembers};
use gateway_testkit::{World, WorldConfig};

/// The kinds of payload measured separately.
pub(crate) const KINDS: [&str; 8] = [
    "HELLO",
    "READY",
    "GUILD_CREATE",
    "GUILD_MEMBERS_CHUNK",
    "MESSAGE_CREATE",
    "PRESENCE_UPDATE",
    "TYPING_START",
    "HEARTBEAT_ACK",
];

/// One payload of the corpus.
pub(crate) struct Item {
    /// Index into [`KINDS`].
    pub(crate) kind: usize,
    /// The whole payload JSON.
    pub(crate) json: String,
}

/// The corpus, in the order a connection would receive it: startup first, then traffic.
pub(crate) struct Corpus {
    pub(crate) items: Vec<Item>,
    /// Where steady-state traffic starts (after READY and the GUILD_CREATEs).
    pub(crate) steady_from: usize,
}

impl Corpus {
    pub(crate) fn bytes(&self) -> usize {
        self.items.iter().map(|i| i.json.len()).sum()
    }

    /// Dispatches (name and `d`) framed as the gateway sends them, sequence numbers from 1.
    pub(crate) fn of_dispatches(events: &[(String, String)]) -> Self {
        let items = events
            .iter()
            .enumerate()
            .map(|(i, (t, d))| Item {
                kind: KINDS.iter().position(|k| k == t).unwrap_or(0),
                json: format!(r#"{{"t":"{t}","s":{},"op":0,"d":{d}}}"#, i + 1),
            })
            .collect();
        Corpus {
            items,
            steady_from: 0,
        }
    }
}

/// Builds the corpus. `scale` 1.0 is the full mix (about 100 MB of JSON); `--quick` uses 0.1.
pub(crate) fn build(seed: u64, scale: f64) -> Corpus {
    let n = |full: usize| ((full as f64 * scale).round() as usize).max(1);
    // GUILD_CREATE from 100 to 25,000 members: 3 × 25k, 30 × 1k, 200 × 100 (fewer when quick).
    let mut sizes = vec![25_000; n(3)];
    sizes.extend(vec![1_000; n(30)]);
    sizes.extend(vec![100; n(200)]);
    // One extra guild of 30,000 members to cut the member chunks from.
    let chunk_guild = sizes.len();
    sizes.push(30_000);
    let world = World::new(WorldConfig {
        seed,
        guild_sizes: sizes,
        unavailable: 0,
    });
    let guilds = world.guilds();
    let mut items = Vec::new();
    let mut seq = 0u64;
    let mut push = |items: &mut Vec<Item>, kind: usize, name: Option<&str>, d: &str| {
        let json = match name {
            Some(t) => {
                seq += 1;
                format!(r#"{{"t":"{t}","s":{seq},"op":0,"d":{d}}}"#)
            }
            None => d.to_owned(),
        };
        items.push(Item { kind, json });
    };
    push(
        &mut items,
        0,
        None,
        r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\"gateway-prd-us-east1-b-0568\",{\"micros\":0.0}]"]}}"#,
    );
    let ready = world.ready_json(
        "0123456789abcdef0123456789abcdef",
        "wss://gateway-us-east1-b.discord.gg",
        [0, 1],
        Intents::all(),
    );
    push(&mut items, 1, Some("READY"), &ready);
    for g in &guilds[..chunk_guild] {
        push(
            &mut items,
            2,
            Some("GUILD_CREATE"),
            &world.guild_create_json(g, Intents::all(), 250),
        );
    }
    let steady_from = items.len();
    let chunk_source = &guilds[chunk_guild];
    let request = RequestGuildMembers::builder(chunk_source.id)
        .query("", 0)
        .build();
    let chunks = match request {
        Ok(r) => world.members_chunk_json(chunk_source, &r, false),
        Err(_) => Vec::new(),
    };
    // Traffic: messages, presences and typing, interleaved, with ACKs and chunks sprinkled in.
    let (messages, presences, typing, acks, chunk_count) =
        (n(11_000), n(25_000), n(8_000), n(110), n(30));
    let total = messages + presences + typing;
    let traffic_guilds = &guilds[..chunk_guild];
    let (mut m, mut p, mut t) = (0, 0, 0);
    for i in 0..total {
        let g = &traffic_guilds[i % traffic_guilds.len()];
        // Deterministic interleaving in proportion to the counts.
        if m * total < messages * (i + 1) && m < messages {
            let len = [300, 1200, 1800, 2200, 2600, 3400, 6000][m % 7];
            push(
                &mut items,
                4,
                Some("MESSAGE_CREATE"),
                &world.message_create_json(g, m as u64, len),
            );
            m += 1;
        } else if p * total < presences * (i + 1) && p < presences {
            push(
                &mut items,
                5,
                Some("PRESENCE_UPDATE"),
                &world.presence_update_json(g, p),
            );
            p += 1;
        } else if t < typing {
            push(
                &mut items,
                6,
                Some("TYPING_START"),
                &world.typing_start_json(g, t),
            );
            t += 1;
        }
        if i % (total / acks).max(1) == 0 {
            push(
                &mut items,
                7,
                None,
                r#"{"t":null,"s":null,"op":11,"d":null}"#,
            );
        }
        let every = (total / chunk_count).max(1);
        let chunk = chunks
            .get((i / every) % chunks.len().max(1))
            .filter(|_| i % every == 1);
        if let Some(c) = chunk {
            push(&mut items, 3, Some("GUILD_MEMBERS_CHUNK"), c);
        }
    }
    Corpus { items, steady_from }
}
