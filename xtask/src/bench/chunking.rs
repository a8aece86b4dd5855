//! Chunking: the member chunks answering a startup of large guilds, decoded, typed and tracked,
//! against decoding them alone. One core, in memory: no sockets, the tracker is sans-IO.

use std::hint::black_box;
use std::time::Instant;

use gateway_chunking::{ChunkEvent, Outcome, Tracker, TrackerConfig, TrackerOutput};
use gateway_codec::{Compression, Compressor, Decoder};
use gateway_model::{
    DispatchEvent, EventTypes, GatewayEvent, GuildMembersChunk, Intents, RequestGuildMembers,
};
use gateway_testkit::{World, WorldConfig};
use serde::Serialize;

use super::{alloc, decode};

/// Members of each guild: the largest guilds of the decode corpus.
const MEMBERS: usize = 25_000;

/// One compression's figures.
#[derive(Debug, Serialize)]
pub(crate) struct ChunkingFigure {
    pub(crate) compression: String,
    pub(crate) guilds: usize,
    pub(crate) members: usize,
    pub(crate) chunks: usize,
    pub(crate) json_bytes: usize,
    /// Decompress + envelope of every chunk (median pass).
    pub(crate) decode_ms: f64,
    /// The same, plus typing each chunk's `d` as a `GuildMembersChunk` (members left raw).
    pub(crate) typed_ms: f64,
    /// The same, plus the tracker: requests opened, every chunk tracked, every request finished.
    pub(crate) tracked_ms: f64,
    /// `tracked / decode - 1`: what typing and tracking add to decoding.
    pub(crate) typed_and_tracked_over_decode: f64,
    /// `tracked / typed - 1`: what the tracker alone adds.
    pub(crate) tracker_over_typed: f64,
    /// The most Rust heap a typed pass held beyond the warm decoder: one chunk's typed event
    /// (its raw member array is copied out of the decoder's buffer).
    pub(crate) typed_peak_heap_kib: f64,
    /// The same for the tracked pass: the typed event and the tracker.
    pub(crate) tracked_peak_heap_kib: f64,
    /// Rust heap the tracker still holds once every request finished.
    pub(crate) tracker_heap_after_kib: f64,
}

/// The chunk stream of one startup: G guilds' requests, as a tracker with `seed` makes them.
struct Startup {
    world: World,
    seed: u64,
    frames: Vec<Vec<u8>>,
    json_bytes: usize,
}

fn tracker(world: &World, seed: u64, now: Instant) -> Result<Tracker, String> {
    let mut config = TrackerConfig::new(1, [0], Intents::GUILDS | Intents::GUILD_MEMBERS);
    config.seed = seed;
    let mut tracker = Tracker::new(config);
    for g in world.guilds() {
        tracker
            .handle_request(now, RequestGuildMembers::builder(g.id).query("", 0), g.id)
            .map_err(|e| e.to_string())?;
    }
    Ok(tracker)
}

fn startup(seed: u64, guilds: usize, compression: Compression) -> Result<Startup, String> {
    let world = World::new(WorldConfig {
        seed,
        guild_sizes: vec![MEMBERS; guilds],
        unavailable: 0,
    });
    let mut tracker = tracker(&world, seed, Instant::now())?;
    let mut compressor = Compressor::new(compression).map_err(|e| e.to_string())?;
    let (mut frames, mut json_bytes, mut seq) = (Vec::new(), 0, 0u64);
    let now = Instant::now();
    while let Some(output) = tracker.poll_output(now) {
        let TrackerOutput::Send { request, .. } = output else {
            continue;
        };
        let guild = world
            .guild(request.guild_id())
            .ok_or("a request for an unknown guild")?;
        for d in world.members_chunk_json(guild, &request, false) {
            seq += 1;
            let json = format!(r#"{{"t":"GUILD_MEMBERS_CHUNK","s":{seq},"op":0,"d":{d}}}"#);
            json_bytes += json.len();
            frames.push(
                compressor
                    .compress_to_vec(json.as_bytes())
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(Startup {
        world,
        seed,
        frames,
        json_bytes,
    })
}

/// Decodes every frame; `each` gets the typed chunk when `typed`.
fn pass(
    startup: &Startup,
    decoder: &mut Decoder,
    typed: bool,
    mut each: impl FnMut(&GuildMembersChunk),
) -> Result<(), String> {
    decoder.reset().map_err(|e| e.to_string())?;
    for frame in &startup.frames {
        let payload = decoder
            .push(frame)
            .map_err(|e| e.to_string())?
            .ok_or("incomplete payload")?;
        if !typed {
            black_box(&payload);
            continue;
        }
        match GatewayEvent::from_payload(&payload, EventTypes::STACK) {
            Ok(Some(GatewayEvent::Dispatch(d))) => match &d.event {
                DispatchEvent::GuildMembersChunk(chunk) => each(chunk),
                other => return Err(format!("unexpected {}", other.name())),
            },
            Ok(_) => return Err("not a dispatch".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Decodes and types every chunk, and drops it.
fn typed_pass(startup: &Startup, decoder: &mut Decoder) -> Result<(), String> {
    pass(startup, decoder, true, |chunk| {
        black_box(chunk);
    })
}

/// One tracked startup: requests opened, chunks decoded, typed and tracked, every request
/// finished (checked).
fn tracked_pass(startup: &Startup, decoder: &mut Decoder) -> Result<Tracker, String> {
    let now = Instant::now();
    let mut tracker = tracker(&startup.world, startup.seed, now)?;
    while tracker.poll_output(now).is_some() {}
    let mut complete = 0;
    pass(startup, decoder, true, |chunk| {
        tracker.handle_chunk(now, 0, chunk);
        while let Some(output) = tracker.poll_output(now) {
            let TrackerOutput::Event(event) = output else {
                continue;
            };
            if let ChunkEvent::RequestFinished(f) = &event {
                complete += usize::from(f.outcome == Outcome::Complete);
            }
            black_box(event);
        }
    })?;
    if complete != startup.world.guilds().len() {
        return Err(format!(
            "{complete} of {} requests completed",
            startup.world.guilds().len()
        ));
    }
    Ok(tracker)
}

/// Measures each compression.
pub(crate) fn run(seed: u64, guilds: usize, passes: usize) -> Result<Vec<ChunkingFigure>, String> {
    let mut figures = Vec::new();
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        eprintln!(
            "[bench] chunking: {guilds} guilds × {MEMBERS} members, {compression}, ×{passes}…"
        );
        let startup = startup(seed, guilds, compression)?;
        let new_decoder = || Decoder::new(compression).map_err(|e| e.to_string());
        // One decoder per kind of pass (each pass resets its own), so the three start alike.
        let (mut d1, mut d2, mut d3) = (new_decoder()?, new_decoder()?, new_decoder()?);
        let times = decode::medians_alternated(
            passes,
            &mut [
                &mut || pass(&startup, &mut d1, false, |_| {}),
                &mut || typed_pass(&startup, &mut d2),
                &mut || tracked_pass(&startup, &mut d3).map(drop),
            ],
        )?;
        // Memory: one typed and one tracked pass with a warm decoder, each peak restarted just
        // before.
        let mut decoder = d1;
        typed_pass(&startup, &mut decoder)?;
        let base = alloc::live_bytes();
        alloc::reset_peak();
        typed_pass(&startup, &mut decoder)?;
        let typed_peak = alloc::peak_bytes().saturating_sub(base);
        let base = alloc::live_bytes();
        alloc::reset_peak();
        let tracker = tracked_pass(&startup, &mut decoder)?;
        let tracked_peak = alloc::peak_bytes().saturating_sub(base);
        let after = alloc::live_bytes().saturating_sub(base);
        drop(tracker);
        let [decode, typed, tracked] = [times[0], times[1], times[2]].map(|t| t.as_secs_f64());
        figures.push(ChunkingFigure {
            compression: compression.to_string(),
            guilds,
            members: guilds * MEMBERS,
            chunks: startup.frames.len(),
            json_bytes: startup.json_bytes,
            decode_ms: decode * 1e3,
            typed_ms: typed * 1e3,
            tracked_ms: tracked * 1e3,
            typed_and_tracked_over_decode: tracked / decode.max(1e-12) - 1.0,
            tracker_over_typed: tracked / typed.max(1e-12) - 1.0,
            typed_peak_heap_kib: typed_peak as f64 / 1024.0,
            tracked_peak_heap_kib: tracked_peak as f64 / 1024.0,
            tracker_heap_after_kib: after as f64 / 1024.0,
        });
    }
    Ok(figures)
}
