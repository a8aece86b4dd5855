#!/usr/bin/env node
// A bot on @discordjs/ws for `cargo xtask interop --rolling` (see interop/CONTRACT.md, "The rolling restart"):
// a WebSocketManager as a bot runs one, its REST and gateway URL taken from `--rest` (the proxies' front), every
// shard of the bot's shard count. It prints what it sees on stdout, one line each, until stdin closes:
//   READY <shard> <session_id>     a shard reached READY
//   RESUMED <shard>                a shard resumed its session
//   EVENT <shard> <n>              a TESTKIT_EVENT and its counter
// The checks are the caller's (every counter once, in order, per shard; no READY after the first).
import { parseArgs } from 'node:util';
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';
import { GatewayIntentBits } from 'discord-api-types/v10';

const { values: args } = parseArgs({ options: { rest: { type: 'string' }, token: { type: 'string' } } });
if (!args.rest || !args.token) {
  console.error('usage: rolling.mjs --rest http://127.0.0.1:PORT --token T');
  process.exit(2);
}
const say = (line) => process.stdout.write(`${line}\n`);
const rest = new REST({ api: `${args.rest.replace(/\/+$/, '')}/api`, version: '10' }).setToken(args.token);
const intents = GatewayIntentBits.Guilds | GatewayIntentBits.GuildMessages;
const manager = new WebSocketManager({ token: args.token, intents, rest, compression: CompressionMethod.ZlibNative });

manager.on(WebSocketShardEvents.Debug, (msg, id) => console.error(`[shard ${id}] ${msg}`));
manager.on(WebSocketShardEvents.Error, (err, id) => console.error(`[shard ${id}] error`, err));
manager.on(WebSocketShardEvents.Closed, (code, id) => console.error(`[shard ${id}] closed ${code}`));
manager.on(WebSocketShardEvents.Ready, (data, id) => say(`READY ${id} ${data.session_id}`));
manager.on(WebSocketShardEvents.Resumed, (id) => say(`RESUMED ${id}`));
manager.on(WebSocketShardEvents.Dispatch, (payload, id) => {
  if (payload.t === 'TESTKIT_EVENT') say(`EVENT ${id} ${payload.d.n}`);
});

process.stdin.resume();
process.stdin.on('end', async () => {
  await manager.destroy({ reason: 'the run is over' }).catch((err) => console.error('destroy:', err));
  process.exit(0);
});
await manager.connect();
