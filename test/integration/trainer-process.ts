// A trainer child process (dist/trainer-image/process/main.js) for the integration tests that run
// real trainers, and the member keys they sign with.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type FederationSpec, federationSpecHash } from "../../core/api/index.js";

const MAIN = fileURLToPath(new URL("../../trainer-image/process/main.js", import.meta.url));

/** One JSON log line of a trainer (a line that is not JSON is kept as its `msg`). */
export type LogLine = Record<string, unknown> & { msg?: string };

/** A member of a test federation: its id, public key and private key file. */
export interface Member {
  id: string;
  /** Base64 of the raw 32-byte Ed25519 public key. */
  publicKey: string;
  /** PKCS #8 PEM of the private key. */
  keyFile: string;
}

/** Generates an Ed25519 key for each member id and writes its private key under `directory`. */
export async function createMembers(directory: string, ids: readonly string[]): Promise<Member[]> {
  return Promise.all(
    ids.map(async (id) => {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      const keyFile = join(directory, `${id}.pem`);
      await writeFile(keyFile, privateKey.export({ format: "pem", type: "pkcs8" }));
      const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
      return { id, publicKey: raw.toString("base64"), keyFile };
    }),
  );
}

/**
 * Writes `member`'s TrainerConfig for `federation` (CPU backend, NATS at `natsUrl`, data under
 * `directory`, `extra` fields on top) to `directory/<federation id>-<member id>.json`; returns
 * the file.
 */
export async function writeTrainerConfig(
  directory: string,
  federation: FederationSpec,
  member: Member,
  natsUrl: string,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const file = join(directory, `${federation.id}-${member.id}.json`);
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: "fedtrain.dev/v1alpha1",
      kind: "TrainerConfig",
      federation,
      federationSpecHash: federationSpecHash(federation),
      member: { id: member.id, publicKey: member.publicKey, privateKeyFile: member.keyFile },
      transport: { natsUrls: [natsUrl] },
      backend: "CPU",
      dataDir: directory,
      ...extra,
    }),
  );
  return file;
}

/** A trainer child process with its JSON log lines. */
export class TrainerProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  private readonly waiters: {
    test: (line: LogLine) => boolean;
    resolve: (line: LogLine) => void;
  }[] = [];

  constructor(args: string[]) {
    const env: NodeJS.ProcessEnv = { ...process.env, FEDTRAIN_METRICS_ADDRESS: "127.0.0.1:0" };
    delete env.JOB_COMPLETION_INDEX;
    this.child = spawn(process.execPath, [MAIN, ...args], { env, stdio: "pipe" });
    this.child.stderr!.on("data", (chunk) => {
      this.stderr += chunk;
    });
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text };
      }
      this.lines.push(line);
      for (const waiter of this.waiters.filter((w) => w.test(line))) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  /** Resolves with the first log line (already seen or to come) that passes `test`. */
  waitFor(test: (line: LogLine) => boolean): Promise<LogLine> {
    const seen = this.lines.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.waiters.push({ test, resolve });
      this.child.once("exit", (code) =>
        reject(new Error(`exited ${code} before the awaited line:\n${this.tail()}`)),
      );
    });
  }

  /** The first log line with this message. */
  line(msg: string): LogLine | undefined {
    return this.lines.find((line) => line.msg === msg);
  }

  /** The last log lines and stderr, to explain a failure. */
  tail(): string {
    return `${this.lines
      .slice(-15)
      .map((l) => JSON.stringify(l))
      .join("\n")}\n${this.stderr.slice(-2000)}`;
  }
}
