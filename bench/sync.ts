// `npm run bench -- sync [--repeat N] [--sizes B,B,...]`: one round's exchange and commit for 4 workers over the
// federation protocol, against raw NATS publish/subscribe of the same bytes in the same run, at
// update sizes of 100 KB, 1 MB, 10 MB and 20 MB. Each worker runs in its own thread with its own
// connection, as workers run in their own processes in a real federation; the raw side uses the
// same threads, the same nats-server and the same chunk size. Raw NATS stores, verifies and
// orders nothing, so it is the ceiling: ratioToRaw = raw time / round time.
import crypto from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import {
  type Commit,
  type CommittedUpdate,
  connectNats,
  FederationWorker,
  generateKeyPair,
  keyPairFromPrivate,
  type ProtocolSpec,
  type ReplicaModel,
  sha256,
  toBase64,
} from "../core/protocol/index.js";
import { startNatsServer } from "../testbed/nats.js";

const defaultSizes = [100_000, 1_000_000, 10_000_000, 20_000_000];
const workerCount = 4;
// A step that takes this long is stuck (a lost message), not slow: fail instead of hanging.
const stepTimeoutMs = 60_000;

/** One row of the result. */
export interface SyncSize {
  bytes: number;
  roundSeconds: number;
  rawNatsSeconds: number;
  ratioToRaw: number;
}

interface ThreadSetup {
  fedtrainSyncBench: true;
  url: string;
  index: number;
  privateKeys: Uint8Array[];
}

type Command =
  | { kind: "subscribe"; subject: string; bytes: number; total: number }
  | { kind: "publish"; subject: string; chunkBytes: number }
  | { kind: "join"; federation: string; bytes: number }
  | { kind: "round" }
  | { kind: "leave" };

/** A model that only chains the digests it is given: the benchmark measures the protocol. */
class DigestModel implements ReplicaModel {
  private state: Uint8Array = new Uint8Array(32);
  apply(_: Commit, updates: readonly CommittedUpdate[]) {
    const hash = crypto.createHash("sha256").update(this.state);
    for (const u of updates) hash.update(u.digest);
    this.state = new Uint8Array(hash.digest());
  }
  hash() {
    return this.state;
  }
  snapshot() {
    return this.state;
  }
  restore(bytes: Uint8Array) {
    this.state = bytes;
  }
}

export async function run(args: string[]): Promise<{ sizes: SyncSize[] }> {
  const repeatAt = args.indexOf("--repeat");
  // Medians of 7: one run slowed by another process on a shared machine does not move them.
  const repeat = repeatAt >= 0 ? Number(args[repeatAt + 1]) : 7;
  const sizesAt = args.indexOf("--sizes");
  const sizes = sizesAt >= 0 ? args[sizesAt + 1]!.split(",").map(Number) : defaultSizes;
  const server = await startNatsServer();
  const privateKeys = Array.from({ length: workerCount }, () => generateKeyPair().privateKey);
  const threads = Array.from(
    { length: workerCount },
    (_, index) =>
      new Worker(new URL(import.meta.url), {
        workerData: {
          fedtrainSyncBench: true,
          url: server.url,
          index,
          privateKeys,
        } satisfies ThreadSetup,
      }),
  );
  const all = async (command: Command): Promise<number> => {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`"${command.kind}" took over ${stepTimeoutMs} ms`)),
        stepTimeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all(threads.map((t) => call(t, command))), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return (performance.now() - started) / 1000;
  };
  try {
    const rows: SyncSize[] = [];
    let rawRun = 0;
    for (const bytes of sizes) {
      const federation = `bench-${bytes}`;
      await all({ kind: "join", federation, bytes });
      await all({ kind: "round" }); // warms up: the first round also opens the ledger consumer
      // Raw and round runs alternate, so that both see the same load on a shared machine. Raw
      // sends 1 MiB chunks, no smaller than the protocol's (max_payload less 4 KiB, ≤ 1 MiB).
      const raw: number[] = [];
      const round: number[] = [];
      for (let r = 0; r < repeat; r++) {
        const subject = `bench.raw.${rawRun++}`;
        // Each thread receives the others' bytes: its connection, like every fedtrain
        // connection, does not echo its own messages back.
        await all({ kind: "subscribe", subject, bytes, total: bytes * (workerCount - 1) });
        raw.push(await all({ kind: "publish", subject, chunkBytes: 1 << 20 }));
        round.push(await all({ kind: "round" }));
      }
      await all({ kind: "leave" });
      const row = {
        bytes,
        roundSeconds: median(round),
        rawNatsSeconds: median(raw),
        ratioToRaw: median(raw) / median(round),
      };
      console.log(
        `${(bytes / 1e6).toFixed(1).padStart(5)} MB  round ${row.roundSeconds.toFixed(3)} s  raw ${row.rawNatsSeconds.toFixed(3)} s  ratio ${row.ratioToRaw.toFixed(2)}`,
      );
      rows.push(row);
    }
    return { sizes: rows };
  } finally {
    await Promise.all(threads.map((t) => t.terminate()));
    await server.stop();
  }
}

function call(thread: Worker, command: Command): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (reply: { ok: boolean; error?: string }) => {
      thread.off("error", reject);
      if (reply.ok) resolve();
      else reject(new Error(reply.error));
    };
    thread.once("message", onMessage);
    thread.once("error", reject);
    thread.postMessage(command);
  });
}

async function threadMain(setup: ThreadSetup): Promise<void> {
  const port = parentPort!;
  const nc = await connectNats(setup.url, `bench-${setup.index}`);
  let worker: FederationWorker | undefined;
  let payload = new Uint8Array(0);
  let rawData = new Uint8Array(0);
  let rawDone: Promise<void> = Promise.resolve();
  const handle = async (command: Command): Promise<void> => {
    switch (command.kind) {
      case "subscribe": {
        rawData = new Uint8Array(crypto.randomBytes(command.bytes));
        let received = 0;
        rawDone = new Promise<void>((resolve) => {
          const sub = nc.subscribe(command.subject, {
            callback: (_, msg) => {
              received += msg.data.length;
              if (received >= command.total) {
                sub.unsubscribe();
                resolve();
              }
            },
          });
        });
        await nc.flush();
        return;
      }
      case "publish": {
        for (let at = 0; at < rawData.length; at += command.chunkBytes) {
          nc.publish(command.subject, rawData.subarray(at, at + command.chunkBytes));
          // Same backpressure as a client that waits for its socket: flush every 8 chunks.
          if ((at / command.chunkBytes) % 8 === 7) await nc.flush();
        }
        await nc.flush();
        await rawDone;
        return;
      }
      case "join": {
        const spec: ProtocolSpec = {
          id: command.federation,
          sync: { quorum: { fraction: 1 }, roundDeadlineSeconds: 30, checkpointEveryRounds: 0 },
          membership: {
            policy: "Allowlist",
            members: setup.privateKeys.map((k, i) => ({
              id: `m${i}`,
              publicKey: toBase64(keyPairFromPrivate(k).publicKey),
            })),
            organiserKeys: [],
          },
        };
        payload = new Uint8Array(crypto.randomBytes(command.bytes));
        worker = await FederationWorker.start({
          nc,
          spec,
          specHash: sha256(new TextEncoder().encode(command.federation)),
          memberId: `m${setup.index}`,
          workerId: "w0",
          privateKey: setup.privateKeys[setup.index]!,
          model: new DigestModel(),
          settings: { heartbeatIntervalMs: 500, workerTtlMs: 5_000, leaseTtlMs: 3_000 },
        });
        // Every worker must see the others live before the first round is all-in.
        await sleep(1_000);
        return;
      }
      case "round":
        await worker!.contribute(payload);
        return;
      case "leave":
        await worker?.stop();
        worker = undefined;
        return;
    }
  };
  port.on("message", (command: Command) => {
    handle(command).then(
      () => port.postMessage({ ok: true }),
      (error) => port.postMessage({ ok: false, error: String(error) }),
    );
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

if (!isMainThread && (workerData as ThreadSetup | undefined)?.fedtrainSyncBench)
  await threadMain(workerData as ThreadSetup);
