// The test bed's log keeper, one per real node (a cluster's logging agent in miniature): copies
// what the node's containers write (the kubelet's pod log folder, CRI format) into the cluster's
// pods folder as plain text, `<pods>/<namespace>_<pod>_<uid>/logs/<container>.log`, restarts
// appended in order. The kubelet removes a deleted pod's logs; tests and the demo read a run's
// trainer logs after its pods are gone, as a cluster's log store would keep them.
// Started by testbed.ts; SIGTERM copies what is left and exits.
import { appendFile, mkdir, open, readdir } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { CriLogDecoder } from "./cri-log.js";

const { values } = parseArgs({
  options: { from: { type: "string" }, to: { type: "string" } },
});
if (!values.from || !values.to) {
  console.error("usage: log-keeper --from KUBELET_POD_LOGS --to PODS_DIR");
  process.exit(2);
}
const from = values.from;
const to = values.to;
// Often enough that a test reading a log sees lines within a second of the trainer writing them.
const pollMs = 250;

interface Followed {
  offset: number;
  decoder: CriLogDecoder;
}
const followed = new Map<string, Followed>();

async function pass(): Promise<void> {
  for (const pod of await readdir(from).catch(() => [] as string[])) {
    for (const container of await readdir(path.join(from, pod)).catch(() => [] as string[])) {
      const dir = path.join(from, pod, container);
      const files = (await readdir(dir).catch(() => [] as string[]))
        .filter((f) => /^\d+\.log$/.test(f))
        .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
      for (const file of files) await copyNew(path.join(dir, file), pod, container);
    }
  }
}

async function copyNew(file: string, pod: string, container: string): Promise<void> {
  let state = followed.get(file);
  if (!state) {
    state = { offset: 0, decoder: new CriLogDecoder() };
    followed.set(file, state);
  }
  const handle = await open(file, "r").catch(() => undefined);
  if (!handle) return;
  try {
    const { size } = await handle.stat();
    if (size <= state.offset) return;
    const buffer = Buffer.alloc(size - state.offset);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, state.offset);
    state.offset += bytesRead;
    const text = state.decoder.push(buffer.subarray(0, bytesRead).toString("utf8"));
    if (!text) return;
    const target = path.join(to, pod, "logs");
    await mkdir(target, { recursive: true });
    await appendFile(path.join(target, `${container}.log`), text);
  } finally {
    await handle.close();
  }
}

let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});
while (!stopping) {
  await pass();
  await sleep(pollMs);
}
await pass();
