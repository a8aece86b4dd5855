// What every Node probe shares (see CONTRACT.md): the CHECK lines on stdout, waiting with a
// deadline, and the run itself: its arguments, its 60 s cap and its exit code.
import { parseArgs } from 'node:util';

const CAP_MS = 60_000;

/** Reports each check once: `CHECK <name> ok|fail <detail>`. */
export function reporter(checks) {
  const reported = new Map();
  const report = (name, ok, detail) => {
    if (reported.has(name)) return;
    reported.set(name, ok);
    process.stdout.write(`CHECK ${name} ${ok ? 'ok' : 'fail'} ${detail}\n`);
  };
  /** Fails every check not reported yet with `reason`, then exits: 0 iff all passed. */
  const finish = (reason) => {
    for (const name of checks) report(name, false, reason);
    process.exit(checks.every((name) => reported.get(name)) ? 0 : 1);
  };
  return { report, finish };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `pred` every 20 ms until it holds (true) or `deadline` passes (false). */
export async function until(pred, deadline) {
  while (!pred()) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** `promise`, or an error named `what` once `deadline` passes. */
export function withDeadline(promise, deadline, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out`)), Math.max(100, deadline - Date.now()));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Reads `--rest`, `--token`, `--compression` and runs `run(args, deadline)` under the cap. */
export function main(finish, run, defaultCompression) {
  const { values: args } = parseArgs({
    options: {
      rest: { type: 'string' },
      token: { type: 'string' },
      compression: { type: 'string', default: defaultCompression },
    },
  });
  if (!args.rest || !args.token) {
    console.error('usage: probe.mjs --rest http://127.0.0.1:PORT --token T --compression zlib-stream|zstd-stream|none');
    process.exit(2);
  }
  args.rest = args.rest.replace(/\/+$/, '');
  setTimeout(() => finish(`${CAP_MS / 1000} s cap reached`), CAP_MS);
  run(args, Date.now() + CAP_MS - 6_000).then(
    () => finish('not reached: an earlier step failed'),
    (err) => { console.error('probe error:', err); finish(`probe error: ${err}`); },
  );
}
