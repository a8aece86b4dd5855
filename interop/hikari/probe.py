#!/usr/bin/env python3
"""Interop probe: hikari 2.7.0 (a real Python Discord library) against gateway-testkit.

It runs `hikari.GatewayBot` as a bot would: REST base URL pointed at the server, so hikari takes the gateway
URL from GET /api/v10/gateway/bot. Then, per interop/CONTRACT.md, it proves:
  ready           hikari identifies and reaches READY (ShardReadyEvent);
  guilds_typed    every GUILD_CREATE becomes hikari's typed GuildAvailableEvent (or GuildJoinEvent) whose guild,
                  members, channels, roles and presences hikari's entity factory parses; a GUILD_CREATE that
                  hikari fails to parse shows up as raw count > typed count;
  heartbeat_acks  two or more HEARTBEAT_ACKs, seen as updates of hikari's heartbeat_latency (set only by an ACK);
  member_chunks   bot.request_guild_members(largest, query="", limit=0, nonce) brings every MemberChunkEvent;
  resume          after POST /testkit/shards/0/reconnect (op 7), hikari RESUMEs: ShardResumedEvent, no new READY.
stdout: one `CHECK <name> ok|fail <detail>` line per check; logs go to stderr. Exit 0 iff all pass; 60 s cap.
"""

import argparse
import asyncio
import logging
import math
import os
import sys
import threading
import time

import aiohttp
import hikari
from hikari.api.shard import GatewayCompression
from hikari.impl import shard as shard_impl

CHECKS = ("ready", "guilds_typed", "heartbeat_acks", "member_chunks", "resume")
CAP_S = 60.0
NONCE = "interop-hikari"
COMPRESSION = {
    "zlib-stream": GatewayCompression.TRANSPORT_ZLIB_STREAM,
    "zstd-stream": GatewayCompression.TRANSPORT_ZSTD_STREAM,  # needs backports.zstd on Python < 3.14
    "none": None,
}

_lock = threading.Lock()
_reported: dict[str, bool] = {}


def report(name: str, ok: bool, detail: str) -> None:
    with _lock:
        if name in _reported:
            return
        _reported[name] = ok
        print(f"CHECK {name} {'ok' if ok else 'fail'} {detail}", flush=True)


def finish(reason: str) -> int:
    for name in CHECKS:
        report(name, False, reason)
    return 0 if all(_reported[n] for n in CHECKS) else 1


def watchdog() -> None:
    # Last resort if the event loop is stuck: the contract's cap is hard.
    os._exit(finish(f"{CAP_S:.0f} s cap reached (watchdog)"))


async def until(pred, deadline: float) -> bool:
    while not pred():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def run(args: argparse.Namespace, deadline: float) -> None:
    # GatewayBot 2.7 has no compression argument: it builds each GatewayShardImpl with the shard's default
    # (zstd-stream if backports.zstd imports, else zlib-stream). Setting that keyword default is hikari's knob.
    shard_impl.GatewayShardImpl.__init__.__kwdefaults__["compression"] = COMPRESSION[args.compression]
    try:
        hikari.applications.get_token_id(args.token)
    except ValueError:
        report("ready", False, "hikari.GatewayBot rejects the token: hikari reads the bot id from it, so its first "
               "'.'-separated part must be base64 of a decimal user id (e.g. MTIzNDU2Nzg5MDEyMzQ1Njc4.x.y)")
        return
    bot = hikari.GatewayBot(
        args.token,
        rest_url=f"{args.rest}/api/v10",
        intents=hikari.Intents.ALL,  # the server allows GUILD_MEMBERS and GUILD_PRESENCES
        auto_chunk_members=False,  # the only chunk request is ours
        banner=None,
        logs=None,  # logging is set up in main(), on stderr
        suppress_optimization_warning=True,
    )
    s = argparse.Namespace(ready=0, expected=None, raw=0, typed={}, failed=[], sizes={}, acks=0,
                           chunks={}, chunk_count=None, dup=[], retry_after=None, resumed=0)

    @bot.listen(hikari.ShardReadyEvent)
    async def on_ready(event: hikari.ShardReadyEvent) -> None:
        s.ready += 1
        s.expected = len(event.unavailable_guilds)

    @bot.listen(hikari.ShardPayloadEvent)
    async def on_raw(event: hikari.ShardPayloadEvent) -> None:
        if event.name == "GUILD_CREATE" and not event.payload.get("unavailable"):
            s.raw += 1

    @bot.listen(hikari.GuildVisibilityEvent)
    async def on_guild(event: hikari.GuildVisibilityEvent) -> None:
        if not isinstance(event, (hikari.GuildAvailableEvent, hikari.GuildJoinEvent)):
            return
        try:  # hikari parses lazily: touch every part a bot reads
            guild, members = event.guild, event.members
            _ = (event.channels, event.roles, event.presences, event.emojis, event.voice_states)
            if guild.id != event.guild_id or not guild.name:
                raise ValueError(f"guild id {guild.id} / name {guild.name!r}")
            s.sizes[guild.id] = max(guild.member_count or 0, len(members))
            kind = type(event).__name__
            s.typed[kind] = s.typed.get(kind, 0) + 1
        except Exception as e:  # noqa: BLE001 - a parse failure is the result
            s.failed.append(f"{event.guild_id}: {e!r}")

    @bot.listen(hikari.MemberChunkEvent)
    async def on_chunk(event: hikari.MemberChunkEvent) -> None:
        if event.nonce != NONCE:
            return
        if event.chunk_index in s.chunks:
            s.dup.append(event.chunk_index)
        s.chunks[event.chunk_index] = len(event.members)
        s.chunk_count = event.chunk_count

    @bot.listen(hikari.RequestGuildMembersRateLimitedEvent)
    async def on_rate_limited(event: hikari.RequestGuildMembersRateLimitedEvent) -> None:
        if event.nonce == NONCE:  # the server allows one full member list per guild per 30 s
            s.retry_after = event.retry_after

    @bot.listen(hikari.ShardResumedEvent)
    async def on_resumed(_: hikari.ShardResumedEvent) -> None:
        s.resumed += 1

    async def count_acks() -> None:
        last = math.nan
        while True:
            latency = bot.heartbeat_latency
            if not math.isnan(latency) and latency != last:
                s.acks, last = s.acks + 1, latency
            await asyncio.sleep(0.01)

    left = lambda: max(0.1, deadline - time.monotonic())  # noqa: E731
    acks = asyncio.create_task(count_acks())
    try:
        try:
            await asyncio.wait_for(bot.start(check_for_updates=False), left())
        except Exception as e:  # noqa: BLE001
            report("ready", False, f"bot.start failed: {e!r}")
            return
        await until(lambda: s.ready >= 1, deadline)  # listeners run as tasks
        report("ready", s.ready == 1, f"READY as ShardReadyEvent, {s.expected} guilds announced")

        await until(lambda: s.expected is not None and sum(s.typed.values()) + len(s.failed) >= s.expected
                    and s.raw >= s.expected, min(deadline, time.monotonic() + 10))
        n = sum(s.typed.values())
        report("guilds_typed", n >= 1 and not s.failed and n == s.raw,
               f"{n} of {s.raw} GUILD_CREATE typed ({s.typed}), READY announced {s.expected}; failed: {s.failed}")

        await until(lambda: s.acks >= 2, deadline)
        report("heartbeat_acks", s.acks >= 2, f"{s.acks} heartbeat_latency updates (one per ACK)")

        if not s.sizes:
            report("member_chunks", False, "no typed guild to chunk")
            return
        largest = max(s.sizes, key=s.sizes.get)
        all_chunks = lambda: s.chunk_count is not None and len(s.chunks) >= s.chunk_count  # noqa: E731
        await bot.request_guild_members(largest, query="", limit=0, nonce=NONCE)
        await until(lambda: all_chunks() or s.retry_after is not None, deadline)
        waited = s.retry_after
        if waited is not None:  # as a bot would: wait retry_after, then ask once more
            logging.info("RATE_LIMITED: requesting members again in %s s", waited)
            await asyncio.sleep(min(waited + 0.05, left()))
            await bot.request_guild_members(largest, query="", limit=0, nonce=NONCE)
            await until(all_chunks, deadline)
        complete = s.chunk_count is not None and sorted(s.chunks) == list(range(s.chunk_count))
        report("member_chunks", complete and not s.dup,
               f"guild {largest} ({s.sizes[largest]} members): {len(s.chunks)}/{s.chunk_count} chunks with nonce, "
               f"{sum(s.chunks.values())} members, duplicate indexes {s.dup}"
               + ("" if waited is None else f", after RATE_LIMITED retry_after {waited} s"))

        ready_before = s.ready
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{args.rest}/testkit/shards/0/reconnect") as resp:
                status, body = resp.status, await resp.text()
        if status != 200:
            report("resume", False, f"POST /testkit/shards/0/reconnect -> {status} {body!r}")
            return
        await until(lambda: s.resumed or s.ready > ready_before, deadline)
        report("resume", s.resumed >= 1 and s.ready == ready_before,
               f"{s.resumed} ShardResumedEvent, {s.ready - ready_before} new READY after op 7")
    finally:
        acks.cancel()
        if bot.is_alive:
            try:
                await asyncio.wait_for(bot.close(), 5)
            except Exception as e:  # noqa: BLE001
                logging.warning("closing the bot: %r", e)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--token", required=True)
    parser.add_argument("--compression", choices=sorted(COMPRESSION), default="zlib-stream")
    args = parser.parse_args()
    args.rest = args.rest.rstrip("/")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    timer = threading.Timer(CAP_S, watchdog)
    timer.daemon = True
    timer.start()
    deadline = time.monotonic() + CAP_S - 6  # leaves time to close the shard
    try:
        asyncio.run(run(args, deadline))
        reason = "not reached: an earlier step failed"
    except Exception as e:  # noqa: BLE001
        logging.exception("probe error")
        reason = f"probe error: {e!r}"
    return finish(reason)


if __name__ == "__main__":
    sys.exit(main())
