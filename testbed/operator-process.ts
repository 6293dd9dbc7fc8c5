// The operator run as a local process against a test-bed cluster (as `npm run operator` or a
// developer would run it), for the operator's integration tests and benchmark. In the end-to-end
// tests it runs as a pod instead, installed by the Helm chart.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { builtPath } from "../scripts/repository.js";
import { freePort, waitFor } from "./process.js";

const entry = builtPath("operator", "src", "main.js");

/**
 * Node.js options the operator runs with (the Helm chart sets them in NODE_OPTIONS): a heap limit
 * sized to the operator, small young-generation spaces and V8's size-over-speed mode. Without
 * them V8 lets garbage pile up far beyond what the operator keeps alive; reconciles stay cheap
 * either way (hundreds per second).
 */
export const operatorNodeOptions = [
  "--max-old-space-size=96",
  "--max-semi-space-size=2",
  "--optimize-for-size",
];

/**
 * Environment the operator runs with (the chart's Deployment and the image set it too): glibc
 * makes up to eight malloc arenas per core, one per thread that allocates, and memory freed in
 * one stays in RSS; two arenas keep the operator's peak RSS 10–15 MB lower.
 */
export const operatorEnv: Record<string, string> = { MALLOC_ARENA_MAX: "2" };

/** One running operator process. */
export class OperatorProcess {
  private child?: ChildProcess;

  private constructor(
    readonly metricsPort: number,
    readonly probePort: number,
    private readonly args: string[],
    private readonly logFile: string,
  ) {}

  /** Starts an operator with these extra flags, logging to logFile; waits until it is ready. */
  static async start(
    kubeconfig: string,
    flags: string[],
    logFile: string,
  ): Promise<OperatorProcess> {
    const metricsPort = await freePort();
    const probePort = await freePort();
    const args = [
      `--kubeconfig=${kubeconfig}`,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      `--health-probe-bind-address=127.0.0.1:${probePort}`,
      ...flags,
    ];
    const operator = new OperatorProcess(metricsPort, probePort, args, logFile);
    await operator.restart();
    return operator;
  }

  /** The process id, while running. */
  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** Starts the process again (after stop or kill) with the same flags and ports. */
  async restart(): Promise<void> {
    const log = openSync(this.logFile, "a");
    this.child = spawn(process.execPath, [...operatorNodeOptions, entry, ...this.args], {
      stdio: ["ignore", log, log],
      env: { ...process.env, ...operatorEnv },
    });
    const child = this.child;
    await waitFor(
      "the operator to be ready",
      async () => {
        if (child.exitCode !== null)
          throw new Error(`operator exited with ${child.exitCode}: see ${this.logFile}`);
        const response = await fetch(`http://127.0.0.1:${this.probePort}/readyz`);
        return response.ok ? true : undefined;
      },
      60_000,
      100,
    );
  }

  /** Sends a signal and waits for the process to exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await exited;
  }

  /** Waits until this operator leads (holds its leader-election Lease); `what` names the wait. */
  async waitUntilLeading(timeoutMs: number, what = "the operator to lead"): Promise<void> {
    await waitFor(
      what,
      async () => ((await this.metric("leader_election_master_status")) === 1 ? true : undefined),
      timeoutMs,
    );
  }

  /** The current value of a metric (summed over its label sets that match labels). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!match || match[1] !== name) continue;
      const set = match[2] ?? "";
      if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`)))
        sum += Number(match[3]);
    }
    return sum;
  }
}
