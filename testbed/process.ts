// Long-running processes of the test bed: started detached (they outlive `testbed up`), output to a
// log file, stopped by process group with a grace period, and recognised by their command line so
// that a recycled pid is never killed by mistake.
import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** How to start one daemon. */
export interface DaemonSpec {
  command: string;
  args: string[];
  logFile: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** Starts a daemon in its own process group and returns its pid. */
export function startDaemon(spec: DaemonSpec): number {
  const log = openSync(spec.logFile, "a");
  const child = spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    detached: true,
    stdio: ["ignore", log, log],
  });
  if (child.pid === undefined) throw new Error(`could not start ${spec.command}`);
  child.unref();
  return child.pid;
}

/** Whether pid is a live process whose command line starts with command. */
export async function isRunning(pid: number | undefined, command: string): Promise<boolean> {
  if (!pid) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // A zombie (state Z) has exited: its parent has just not reaped it yet.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return cmdline.split("\0")[0] === command && state !== "Z";
  } catch {
    return false;
  }
}

/**
 * Stops the process group of pid: SIGTERM, then SIGKILL after graceMs. Resolves once the leader is
 * gone. Does nothing when pid is not the expected command any more.
 */
export async function stopDaemon(
  pid: number | undefined,
  command: string,
  graceMs = 10_000,
): Promise<void> {
  if (!pid || !(await isRunning(pid, command))) return;
  signalGroup(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isRunning(pid, command))) return;
    await sleep(50);
  }
  signalGroup(pid, "SIGKILL");
  while (await isRunning(pid, command)) await sleep(50);
}

/** Sends signal to the process group led by pid (and to pid itself, should it have left it). */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Polls check until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const reason = lastError instanceof Error ? `: ${lastError.message}` : "";
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${reason}`);
}

/** Ports freePort has handed out in this process. */
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that this process has not been given
 * before: the kernel may offer a just-closed port again, and a test bed asks for its ports before
 * it starts anything on them (an etcd and an API server were once given the same one).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}
