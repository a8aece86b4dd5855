#!/usr/bin/env python3
"""A bot on hikari 2.7.0 for `cargo xtask interop --rolling` (see interop/CONTRACT.md, "The rolling restart").

It runs `hikari.GatewayBot` as a bot does, its REST base URL (and so its gateway URL and shard count) from `--rest`
(the proxies' front), and prints what it sees on stdout, one line each, until stdin closes:
  READY <shard> <session_id>     a shard reached READY (ShardReadyEvent)
  RESUMED <shard>                a shard resumed its session (ShardResumedEvent)
  EVENT <shard> <n>              a TESTKIT_EVENT (ShardPayloadEvent) and its counter
The checks are the caller's (every counter once, in order, per shard; no READY after the first).
"""

import argparse
import asyncio
import logging
import sys
import threading

import hikari
from hikari.api.shard import GatewayCompression
from hikari.impl import shard as shard_impl


def say(line: str) -> None:
    print(line, flush=True)


async def run(args: argparse.Namespace) -> None:
    shard_impl.GatewayShardImpl.__init__.__kwdefaults__["compression"] = GatewayCompression.TRANSPORT_ZLIB_STREAM
    bot = hikari.GatewayBot(
        args.token,
        rest_url=f"{args.rest}/api/v10",
        intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES,
        auto_chunk_members=False,
        banner=None,
        logs=None,  # logging is set up in main(), on stderr
        suppress_optimization_warning=True,
    )

    @bot.listen(hikari.ShardReadyEvent)
    async def on_ready(event: hikari.ShardReadyEvent) -> None:
        say(f"READY {event.shard.id} {event.session_id}")

    @bot.listen(hikari.ShardResumedEvent)
    async def on_resumed(event: hikari.ShardResumedEvent) -> None:
        say(f"RESUMED {event.shard.id}")

    @bot.listen(hikari.ShardPayloadEvent)
    async def on_raw(event: hikari.ShardPayloadEvent) -> None:
        if event.name == "TESTKIT_EVENT":
            say(f"EVENT {event.shard.id} {event.payload['n']}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    await bot.start(check_for_updates=False)
    await stop.wait()
    await asyncio.wait_for(bot.close(), 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    args.rest = args.rest.rstrip("/")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
