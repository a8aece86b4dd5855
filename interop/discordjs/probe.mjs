#!/usr/bin/env node
// Interop probe: @discordjs/ws 2.0.4 (the gateway layer of discord.js) against gateway-testkit.
//
// It runs a WebSocketManager as a bot would, with a @discordjs/rest REST whose `api` is the server, so the
// manager takes the gateway URL (and shard count) from GET /api/v10/gateway/bot. Then, per interop/CONTRACT.md:
//   ready           the shard identifies and reaches READY;
//   guilds_typed    every GUILD_CREATE is checked against discord-api-types' GatewayGuildCreateDispatchData.
//                   TypeScript types vanish at run time, so this is a hand-written runtime check of the fields a
//                   discord.js bot reads (Guild, GuildMember, Role and channel _patch), not a type check;
//   heartbeat_acks  two or more HeartbeatComplete events (emitted on each HEARTBEAT_ACK);
//   member_chunks   RequestGuildMembers (op 8, query "", limit 0, nonce) for the largest guild, sent with
//                   manager.send(0, ...), brings GUILD_MEMBERS_CHUNK 0..chunk_count-1, each once, with the nonce;
//   resume          after POST /testkit/shards/0/reconnect (op 7) the shard RESUMEs: Resumed, no new READY.
// With --compression none the IDENTIFY asks for payload compression (compress: true), so every check also reads
// payloads that came as standalone zlib binary frames.
// stdout: one `CHECK <name> ok|fail <detail>` line per check; logs go to stderr. Exit 0 iff all pass; 60 s cap.
import { main, reporter, sleep, until, withDeadline } from '../contract.mjs';
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';
import { GatewayDispatchEvents, GatewayIntentBits, GatewayOpcodes } from 'discord-api-types/v10';

const CHECKS = ['ready', 'guilds_typed', 'heartbeat_acks', 'member_chunks', 'resume'];
const NONCE = 'interop-discordjs';
// @discordjs/ws 2.0.4 knows zlib-stream only (CompressionMethod.ZlibNative = node:zlib, ZlibSync = the zlib-sync
// native addon); it has no zstd-stream, and Node 20's node:zlib has no zstd either.
const COMPRESSION = { 'zlib-stream': CompressionMethod.ZlibNative, none: null };

const { report, finish } = reporter(CHECKS);

const isSnowflake = (v) => typeof v === 'string' && /^\d{1,20}$/.test(v);
const isTime = (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v));
/** The problems found in one GUILD_CREATE; [] means it has what a discord.js bot reads.
 * @param {import('discord-api-types/v10').GatewayGuildCreateDispatchData} g */
function guildProblems(g) {
  const bad = [];
  const need = (ok, what) => { if (!ok) bad.push(what); };
  need(isSnowflake(g.id), 'id');
  need(typeof g.name === 'string' && g.name.length > 0, 'name');
  need(isSnowflake(g.owner_id), 'owner_id');
  need(g.icon === null || typeof g.icon === 'string', 'icon');
  need(isTime(g.joined_at), 'joined_at');
  need(typeof g.large === 'boolean', 'large');
  need(Number.isInteger(g.member_count), 'member_count');
  need(Array.isArray(g.features), 'features');
  for (const key of ['roles', 'emojis', 'members', 'channels', 'threads', 'presences', 'voice_states']) {
    need(Array.isArray(g[key]), key);
  }
  if (bad.length) return bad;
  g.roles.forEach((r, i) => {
    let perms = true;
    try { BigInt(r.permissions); } catch { perms = false; } // discord.js: new PermissionsBitField(BigInt(...))
    need(isSnowflake(r.id) && typeof r.name === 'string' && Number.isInteger(r.position) && perms, `roles[${i}]`);
  });
  g.channels.forEach((c, i) => need(isSnowflake(c.id) && Number.isInteger(c.type), `channels[${i}]`));
  g.members.forEach((m, i) => {
    need(m.user && isSnowflake(m.user.id) && typeof m.user.username === 'string' && Array.isArray(m.roles)
      && (m.joined_at === null || isTime(m.joined_at)), `members[${i}]`);
  });
  g.presences.forEach((p, i) => need(p.user && isSnowflake(p.user.id) && typeof p.status === 'string', `presences[${i}]`));
  return bad.slice(0, 5);
}

async function run(args, deadline) {
  const compression = COMPRESSION[args.compression];
  if (compression === undefined) {
    finish(`compression ${args.compression} is not supported by @discordjs/ws 2.0.4 on Node ${process.versions.node}`);
  }
  const rest = new REST({ api: `${args.rest}/api`, version: '10' }).setToken(args.token);
  const intents = Object.values(GatewayIntentBits).filter(Number.isInteger).reduce((a, b) => a | b, 0);
  // Without transport compression the probe asks for payload compression (`compress: true` in IDENTIFY), as
  // discord.js bots may: the testkit then sends large payloads as standalone zlib binary frames, which the shard
  // inflates one by one (node:zlib). With zlib-stream it is off, as Discord turns it off.
  const useIdentifyCompression = compression === null;
  const manager = new WebSocketManager({ token: args.token, intents, rest, compression, useIdentifyCompression });
  const s = { ready: 0, expected: null, typed: 0, failed: [], sizes: new Map(), acks: 0,
    chunks: new Map(), chunkCount: null, dup: [], retryAfter: null, resumed: 0 };

  manager.on(WebSocketShardEvents.Debug, (msg, id) => console.error(`[shard ${id}] ${msg}`));
  manager.on(WebSocketShardEvents.Error, (err, id) => console.error(`[shard ${id}] error`, err));
  manager.on(WebSocketShardEvents.Closed, (code, id) => console.error(`[shard ${id}] closed ${code}`));
  manager.on(WebSocketShardEvents.HeartbeatComplete, () => { s.acks += 1; });
  manager.on(WebSocketShardEvents.Resumed, () => { s.resumed += 1; });
  manager.on(WebSocketShardEvents.Ready, (data) => { s.ready += 1; s.expected = data.guilds.length; });
  manager.on(WebSocketShardEvents.Dispatch, (payload) => {
    if (payload.t === GatewayDispatchEvents.GuildCreate && !payload.d.unavailable) {
      const bad = guildProblems(payload.d);
      if (bad.length) s.failed.push(`${payload.d.id}: ${bad.join(',')}`);
      else { s.typed += 1; s.sizes.set(payload.d.id, payload.d.member_count); }
    } else if (payload.t === GatewayDispatchEvents.GuildMembersChunk && payload.d.nonce === NONCE) {
      if (s.chunks.has(payload.d.chunk_index)) s.dup.push(payload.d.chunk_index);
      s.chunks.set(payload.d.chunk_index, payload.d.members.length);
      s.chunkCount = payload.d.chunk_count;
    } else if (payload.t === GatewayDispatchEvents.RateLimited && payload.d.meta?.nonce === NONCE) {
      s.retryAfter = payload.d.retry_after; // the server allows one full member list per guild per 30 s
    }
  });

  try {
    try {
      await withDeadline(manager.connect(), deadline, 'manager.connect()');
    } catch (err) {
      report('ready', false, `connect failed: ${err}`);
      return;
    }
    report('ready', s.ready === 1, `READY, ${s.expected} guilds announced`);

    const guildsBy = Math.min(deadline, Date.now() + 10_000);
    await until(() => s.expected !== null && s.typed + s.failed.length >= s.expected, guildsBy);
    report('guilds_typed', s.typed >= 1 && s.failed.length === 0,
      `${s.typed} GUILD_CREATE with the fields discord.js reads, READY announced ${s.expected}; failed: [${s.failed}]`);

    await until(() => s.acks >= 2, deadline);
    report('heartbeat_acks', s.acks >= 2, `${s.acks} HeartbeatComplete (one per ACK)`);

    if (s.sizes.size === 0) {
      report('member_chunks', false, 'no typed guild to chunk');
      return;
    }
    const [largest, size] = [...s.sizes].reduce((a, b) => (b[1] > a[1] ? b : a));
    const request = () => manager.send(0, {
      op: GatewayOpcodes.RequestGuildMembers,
      d: { guild_id: largest, query: '', limit: 0, nonce: NONCE },
    });
    await request();
    await until(() => (s.chunkCount !== null && s.chunks.size >= s.chunkCount) || s.retryAfter !== null, deadline);
    const waited = s.retryAfter;
    if (waited !== null) { // as a bot would: wait retry_after, then ask once more
      console.error(`RATE_LIMITED: requesting members again in ${waited} s`);
      await sleep(Math.min(waited * 1000 + 50, deadline - Date.now()));
      await request();
      await until(() => s.chunkCount !== null && s.chunks.size >= s.chunkCount, deadline);
    }
    const indexes = [...s.chunks.keys()].sort((a, b) => a - b);
    const complete = s.chunkCount !== null && indexes.length === s.chunkCount && indexes.every((v, i) => v === i);
    const members = [...s.chunks.values()].reduce((a, b) => a + b, 0);
    report('member_chunks', complete && s.dup.length === 0,
      `guild ${largest} (${size} members): ${s.chunks.size}/${s.chunkCount} chunks with nonce, ${members} members, `
      + `duplicate indexes [${s.dup}]${waited === null ? '' : `, after RATE_LIMITED retry_after ${waited} s`}`);

    const readyBefore = s.ready;
    const resp = await fetch(`${args.rest}/testkit/shards/0/reconnect`, { method: 'POST' });
    const body = await resp.text();
    if (resp.status !== 200) {
      report('resume', false, `POST /testkit/shards/0/reconnect -> ${resp.status} ${JSON.stringify(body)}`);
      return;
    }
    await until(() => s.resumed > 0 || s.ready > readyBefore, deadline);
    report('resume', s.resumed >= 1 && s.ready === readyBefore,
      `${s.resumed} Resumed, ${s.ready - readyBefore} new READY after op 7`);
  } finally {
    await withDeadline(manager.destroy({ reason: 'interop probe done' }), Date.now() + 5_000, 'destroy')
      .catch((err) => console.error('closing the shard:', err));
  }
}

main(finish, run, 'zlib-stream');
