#!/usr/bin/env node
// Interop probe: the full discord.js 14.28.1 `Client` (its caches, its models, its own member fetch) against
// gateway-testkit, or through gateway-proxy.
//
// The client is configured as a bot would configure it, with one change: `rest.api` is the server, so the client
// takes the gateway URL and shard count from GET /api/v10/gateway/bot. Then, per interop/CONTRACT.md:
//   ready           ClientReady fires: discord.js waits for a GUILD_CREATE of every guild READY listed;
//   guilds_typed    every guild READY listed is in client.guilds.cache, available, built by discord.js's Guild
//                   model (name, roles, channels and members cached); a guild missing from READY would be deleted;
//   heartbeat_acks  two or more "Heartbeat acknowledged" (the client's ping is updated on each HEARTBEAT_ACK);
//   member_chunks   guild.members.fetch({ nonce }) on the largest guild resolves with every member, and the raw
//                   GUILD_MEMBERS_CHUNK packets carrying the nonce are 0..chunk_count-1, each once;
//   resume          after POST /testkit/shards/0/reconnect (op 7) the shard RESUMEs (ShardResume, no new READY).
// discord.js's Client compresses only with the zlib-sync native addon; without it (here) it asks for none.
// stdout: one `CHECK <name> ok|fail <detail>` line per check; logs go to stderr. Exit 0 iff all pass; 60 s cap.
import { main, reporter, sleep, until, withDeadline } from '../contract.mjs';
import { Client, Events, GatewayIntentBits } from 'discord.js';

const CHECKS = ['ready', 'guilds_typed', 'heartbeat_acks', 'member_chunks', 'resume'];
const NONCE = 'interop-discordjs-client';

const { report, finish } = reporter(CHECKS);

/** What is wrong with one cached guild, as discord.js built it; [] when nothing is. */
function guildProblems(guild) {
  const bad = [];
  const need = (ok, what) => { if (!ok) bad.push(what); };
  need(guild.available, 'available');
  need(typeof guild.name === 'string' && guild.name.length > 0, 'name');
  need(typeof guild.ownerId === 'string', 'ownerId');
  need(Number.isInteger(guild.memberCount), 'memberCount');
  need(guild.roles.cache.has(guild.id), 'roles (@everyone)');
  need(guild.members.cache.size >= 1, 'members');
  need(guild.joinedTimestamp !== null && !Number.isNaN(guild.joinedTimestamp), 'joinedAt');
  return bad;
}

/** Fetches every member of `guild` with the probe's nonce, waiting out one RATE_LIMITED as a bot would. */
async function fetchMembers(guild, deadline) {
  const time = Math.max(1_000, deadline - Date.now());
  try {
    return { members: await guild.members.fetch({ nonce: NONCE, time }), waited: null };
  } catch (err) {
    const retryAfter = err?.data?.retry_after; // GatewayRateLimitError: one full list per guild per 30 s
    if (typeof retryAfter !== 'number') throw err;
    console.error(`RATE_LIMITED: fetching members again in ${retryAfter} s`);
    await sleep(Math.min(retryAfter * 1000 + 50, deadline - Date.now()));
    const members = await guild.members.fetch({ nonce: NONCE, time: Math.max(1_000, deadline - Date.now()) });
    return { members, waited: retryAfter };
  }
}

function watch(client) {
  const s = { announced: null, readies: 0, acks: 0, chunks: new Map(), chunkCount: null, dup: [], resumed: 0 };
  client.on(Events.Debug, (msg) => {
    console.error(`[debug] ${msg}`);
    if (msg.includes('Heartbeat acknowledged')) s.acks += 1;
  });
  client.on(Events.Error, (err) => console.error('[error]', err));
  client.on(Events.ShardDisconnect, (event, id) => console.error(`[shard ${id}] disconnected ${event?.code}`));
  client.on(Events.ShardResume, () => { s.resumed += 1; });
  client.on(Events.Raw, (packet) => {
    if (packet.t === 'READY') { s.readies += 1; s.announced = packet.d.guilds.length; }
    if (packet.t === 'GUILD_MEMBERS_CHUNK' && packet.d.nonce === NONCE) {
      if (s.chunks.has(packet.d.chunk_index)) s.dup.push(packet.d.chunk_index);
      s.chunks.set(packet.d.chunk_index, packet.d.members.length);
      s.chunkCount = packet.d.chunk_count;
    }
  });
  return s;
}

async function checkMembers(client, s, deadline) {
  const guilds = [...client.guilds.cache.values()];
  if (guilds.length === 0) {
    report('member_chunks', false, 'no guild to chunk');
    return;
  }
  const largest = guilds.reduce((a, b) => (b.memberCount > a.memberCount ? b : a));
  const { members, waited } = await fetchMembers(largest, deadline);
  const indexes = [...s.chunks.keys()].sort((a, b) => a - b);
  const complete = s.chunkCount !== null && indexes.length === s.chunkCount && indexes.every((v, i) => v === i);
  report('member_chunks', complete && s.dup.length === 0 && members.size === largest.memberCount,
    `guild ${largest.id} (${largest.memberCount} members): fetch resolved ${members.size} members; `
    + `${s.chunks.size}/${s.chunkCount} chunks with the nonce, duplicate indexes [${s.dup}]`
    + `${waited === null ? '' : `, after RATE_LIMITED retry_after ${waited} s`}`);
}

async function run(args, deadline) {
  if (args.compression !== 'none') {
    finish(`compression ${args.compression}: discord.js's Client compresses only with the zlib-sync addon`);
  }
  const intents = Object.values(GatewayIntentBits).filter(Number.isInteger).reduce((a, b) => a | b, 0);
  const client = new Client({ intents, rest: { api: `${args.rest}/api` } });
  const s = watch(client);
  const ready = new Promise((resolve) => client.once(Events.ClientReady, resolve));
  try {
    try {
      await withDeadline(client.login(args.token), deadline, 'client.login()');
      await withDeadline(ready, deadline, 'ClientReady');
    } catch (err) {
      report('ready', false, `login failed: ${err}`);
      return;
    }
    report('ready', s.readies === 1, `ClientReady, READY announced ${s.announced} guilds`);

    const cached = [...client.guilds.cache.values()];
    const failed = cached.map((g) => [g.id, guildProblems(g)]).filter(([, bad]) => bad.length > 0);
    report('guilds_typed', cached.length === s.announced && failed.length === 0,
      `${cached.length} guilds cached as discord.js Guilds, READY announced ${s.announced}; `
      + `failed: [${failed.map(([id, bad]) => `${id}: ${bad.join(',')}`)}]`);

    await until(() => s.acks >= 2, deadline);
    report('heartbeat_acks', s.acks >= 2, `${s.acks} heartbeats acknowledged, ping ${client.ws.ping} ms`);

    await checkMembers(client, s, deadline);

    const readiesBefore = s.readies;
    const resp = await fetch(`${args.rest}/testkit/shards/0/reconnect`, { method: 'POST' });
    const body = await resp.text();
    if (resp.status !== 200) {
      report('resume', false, `POST /testkit/shards/0/reconnect -> ${resp.status} ${JSON.stringify(body)}`);
      return;
    }
    await until(() => s.resumed > 0 || s.readies > readiesBefore, deadline);
    report('resume', s.resumed >= 1 && s.readies === readiesBefore,
      `${s.resumed} ShardResume, ${s.readies - readiesBefore} new READY after op 7; `
      + `${client.guilds.cache.size} guilds still cached`);
  } finally {
    await withDeadline(client.destroy(), Date.now() + 5_000, 'destroy')
      .catch((err) => console.error('closing the client:', err));
  }
}

main(finish, run, 'none');
