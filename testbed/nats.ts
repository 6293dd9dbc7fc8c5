// A real nats-server for tests: JetStream with its store on disk in a temporary directory, a raised
// max_payload, a free loopback port. restart() keeps the port and the store, so clients reconnect
// to the same URL and find their streams again.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./process.js";
import { provision } from "./provision.js";
import versions from "./versions.json" with { type: "json" };

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** The nats-server binary; default: the one {@link provision} builds. */
  binary?: string;
  /** Largest message the server accepts, bytes; default 8 MiB. */
  maxPayload?: number;
  /** Milliseconds to wait until the server accepts connections; default 15 s. */
  startTimeoutMs?: number;
  /** Receives the server's log lines; default: dropped. */
  log?: (line: string) => void;
}

/** A running nats-server with JetStream. */
export interface NatsServer {
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (kept across restarts, removed by stop). */
  readonly storeDir: string;
  /**
   * Stops the server (SIGTERM, then SIGKILL; or SIGKILL at once, as a crash) and starts it again on
   * the same port and store.
   */
  restart(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Stops the server without removing its store (likewise); start it again with restart(). */
  kill(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Stops the server and removes its temporary directory. Idempotent. */
  stop(): Promise<void>;
}

/** The server did not start or did not stop in time. */
export class NatsServerError extends Error {
  override name = "NatsServerError";
}

const defaultMaxPayload = 8 * 1024 * 1024;
// A cold JetStream start on a loaded 2-core machine takes a few hundred ms; 15 s leaves room.
const defaultStartTimeoutMs = 15_000;
// nats-server drains and flushes its store on SIGTERM well within this on a test-sized store.
const stopGraceMs = 5_000;

/** The server's configuration file: on host (loopback by default), JetStream on disk under storeDir. */
export function natsServerConfig(
  port: number,
  storeDir: string,
  maxPayload = defaultMaxPayload,
  host = "127.0.0.1",
): string {
  return [
    `host: ${host}`,
    `port: ${port}`,
    // Model updates are tens of MB; the protocol chunks them, but larger messages mean fewer
    // round trips. 8 MB is the largest size NATS recommends.
    `max_payload: ${maxPayload}`,
    // Several workers on one machine each receive tens of MB per round: more than the default
    // 64 MB a client may have pending before the server cuts it off as a slow consumer.
    "max_pending: 512MB",
    "jetstream {",
    `  store_dir: ${JSON.stringify(storeDir)}`,
    "  max_memory_store: 1GB",
    "  max_file_store: 16GB",
    "}",
    "",
  ].join("\n");
}

/** Starts a nats-server with JetStream on a free loopback port and waits until it accepts. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = options.binary ?? (await natsServerBinary());
  const dir = await mkdtemp(path.join(os.tmpdir(), "fedtrain-nats-"));
  const storeDir = path.join(dir, "jetstream");
  const port = await freePort();
  const config = path.join(dir, "nats.conf");
  await writeFile(
    config,
    natsServerConfig(port, storeDir, options.maxPayload ?? defaultMaxPayload),
  );
  const log = options.log ?? (() => {});
  const timeoutMs = options.startTimeoutMs ?? defaultStartTimeoutMs;
  let child: ChildProcess | undefined;
  let removed = false;

  const launch = async () => {
    const started = spawn(binary, ["-c", config], { stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [started.stdout, started.stderr]) {
      stream?.setEncoding("utf8");
      stream?.on("data", (text: string) => {
        for (const line of text.split("\n")) if (line) log(line);
      });
    }
    child = started;
    await waitAccepting(port, started, timeoutMs);
  };
  const halt = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
    running.kill(signal);
    const timer = setTimeout(() => running.kill("SIGKILL"), stopGraceMs);
    await exited;
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (error) {
    await halt();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async restart(signal) {
      if (removed) throw new NatsServerError("nats-server was stopped; start a new one");
      await halt(signal);
      await launch();
    },
    kill: halt,
    async stop() {
      await halt("SIGTERM");
      if (!removed) {
        removed = true;
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * The nats-server binary: `$FEDTRAIN_NATS_SERVER`, else the cached build, else {@link provision}
 * (which builds every test-bed binary that is missing, so it is only called when nats-server is).
 */
export async function natsServerBinary(): Promise<string> {
  return cachedNatsServer() ?? (await provision()).natsServer;
}

/** The nats-server binary if it is already there (`$FEDTRAIN_NATS_SERVER` or the cache). */
export function cachedNatsServer(): string | undefined {
  const fromEnv = process.env.FEDTRAIN_NATS_SERVER;
  if (fromEnv) return fromEnv;
  const cacheDir = process.env.FEDTRAIN_CACHE_DIR ?? path.join(os.homedir(), ".cache", "fedtrain");
  const cached = path.join(cacheDir, "bin", `nats-server-${versions.natsServer}`, "nats-server");
  return existsSync(cached) ? cached : undefined;
}

async function waitAccepting(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: string | undefined;
  child.once("exit", (code, signal) => {
    exit = `exited with ${signal ?? code}`;
  });
  while (Date.now() < deadline) {
    if (exit) throw new NatsServerError(`nats-server ${exit} before accepting connections`);
    if (await answersInfo(port)) return;
    await sleep(50);
  }
  throw new NatsServerError(`nats-server did not accept connections on ${port} in ${timeoutMs} ms`);
}

// The server sends its INFO line once it accepts clients; a bare TCP connect can succeed earlier.
/** Whether a nats-server on port answers with its INFO line (it accepts clients). */
export function answersInfo(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString("utf8").startsWith("INFO")));
  });
}
