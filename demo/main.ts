// `npm run demo`: a three-cluster federation end to end on one machine. Brings up a test bed of
// three clusters (alpine, birch, cedar), installs fedtrain into each with the Helm chart, applies
// the example federation with each member's overlay, shows the run live, prints a summary (loss,
// communication against data-parallel, ledger check, a loss-curve PNG) and tears everything down,
// also on Ctrl-C and on failure.
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, verifyFederationLedger } from "../core/protocol/index.js";
import { repoRoot } from "../scripts/repository.js";
import { buildImages } from "../testbed/container-images.js";
import { FederationBed, type MemberView } from "../testbed/federation-bed.js";
import { formatDuration, provision } from "../testbed/provision.js";
import { Testbed } from "../testbed/testbed.js";
import type { TrainerLog } from "../testbed/trainer-logs.js";
import { demoDataNote, demoFederation, demoSchedule } from "./federation.js";
import { plotLossPng } from "./plot.js";

const testbedDir = path.join(repoRoot, ".testbed", "demo");
/** Where a failed run's pod logs are kept (the test bed's folder is removed on teardown). */
const failedLogsDir = path.join(repoRoot, ".testbed", "demo-failed");
// In the git-ignored out/: a demo run is not a record to commit.
const plotFile = path.join(repoRoot, "out", "demo", "loss.png");
const members = ["alpine", "birch", "cedar"];
const namespace = "fedtrain";
const federationName = "arith";
const federationId = "arith";
const refreshMs = 2_000;
// `npm run demo -- --keep` leaves a finished run's test bed up, to look around in it.
const keep = process.argv.includes("--keep");
// Three cold tfjs trainers share two cores with three control planes; the demo's schedule takes
// 2-4 minutes of that when warm, so this only catches a run that is stuck.
const trainingTimeoutMs = 12 * 60_000;

const started = Date.now();
const say = (line: string) => console.log(`[demo] ${line}`);
const elapsed = () => formatDuration(Date.now() - started);

let federation: FederationBed | undefined;
let tearingDown: Promise<void> | undefined;
let interrupted = false;

/** Stops everything the demo started; safe to call twice and before the test bed is up. */
function tearDown(): Promise<void> {
  tearingDown ??= (async () => {
    say("tearing down the test bed …");
    const bed = federation?.testbed ?? (await Testbed.open(testbedDir, () => {}));
    await bed?.down();
    say(`test bed stopped and ${path.relative(repoRoot, testbedDir)} removed`);
  })();
  return tearingDown;
}

async function main(): Promise<void> {
  process.once("SIGINT", () => {
    console.log("");
    interrupted = true;
    say("interrupted (Ctrl-C)");
    tearDown().then(
      () => process.exit(130),
      (error) => {
        say(`teardown failed: ${String(error)}`);
        process.exit(130);
      },
    );
  });

  say("provisioning the test bed's binaries (cached after the first run) …");
  const binaries = await provision({ log: (line) => say(line) });
  say(
    "building the operator and trainer images from their Dockerfiles (cached after the first run) …",
  );
  await buildImages({ binaries, log: (line) => say(line) });

  const stale = await Testbed.open(testbedDir, () => {});
  if (stale) {
    say("a test bed from an earlier demo is still there: stopping it first");
    await stale.down();
  }
  say(
    `bringing up 3 clusters (${members.join(", ")}), each 1 real node (kubelet + containerd) with 2 GPUs, and NATS,`,
  );
  say("and installing fedtrain with the Helm chart into each cluster …");
  federation = await FederationBed.up({
    dir: testbedDir,
    members,
    // One operator replica per cluster: standbys only cost CPU on a 2-core machine.
    operatorReplicas: 1,
    log: (line) => say(line),
  });
  const bed = federation;
  say(
    `test bed up and fedtrain installed in all three clusters (${elapsed()}): NATS at ${bed.natsUrl}`,
  );

  for (const member of members) {
    const tf = await demoFederation(bed.testbed.binaries.kubectl, repoRoot, member, bed.natsUrl);
    await bed.apply(member, tf);
    say(`${member}: applied examples/federation/overlays/${member} (patched for the demo)`);
  }
  say(
    `training: ${demoSchedule.rounds} rounds × ${demoSchedule.innerSteps} inner steps, ` +
      "CharTransformer on synthetic arithmetic, backend CPU, 1 trainer per member",
  );

  const logs = await watchTraining(bed);
  await summarise(bed, logs);
}

/** Shows the run every 2 s until every member completed; returns the members' trainer logs. */
async function watchTraining(bed: FederationBed): Promise<Map<string, TrainerLog>> {
  const deadline = Date.now() + trainingTimeoutMs;
  const tty = process.stdout.isTTY;
  let shownLines = 0;
  let lastText = "";
  while (tearingDown === undefined) {
    const views = await bed.views(namespace, federationName);
    const text = render(views);
    if (tty) {
      if (shownLines > 0) process.stdout.write(`\x1b[${shownLines}A\x1b[J`);
      process.stdout.write(`${text}\n`);
      shownLines = text.split("\n").length;
    } else if (text !== lastText) {
      process.stdout.write(`${text}\n`);
    }
    lastText = text;
    const failed = views.find((v) => v.status?.phase === "Failed" || v.status?.phase === "Invalid");
    if (failed) {
      const ready = failed.status?.conditions?.find((c) => c.type === "Ready");
      throw new Error(
        `${failed.member}: TrainingFederation is ${failed.status?.phase}: ${ready?.message ?? ""}`,
      );
    }
    // A member whose trainer (re)started after the last commit completes without a round of its
    // own, so completion is judged on the federation's round, not on every member's log.
    const lastRound = Math.max(...views.map((v) => (v.log.rounds.at(-1)?.round ?? -1) + 1));
    const done =
      lastRound >= demoSchedule.rounds && views.every((v) => v.status?.phase === "Completed");
    if (done) return new Map(views.map((v) => [v.member, v.log]));
    if (Date.now() > deadline) {
      throw new Error(
        `training did not complete in ${formatDuration(trainingTimeoutMs)}; trainer logs are under ` +
          `${path.relative(repoRoot, testbedDir)}/<cluster>/pods/`,
      );
    }
    await sleep(refreshMs);
  }
  throw new Error("interrupted");
}

/**
 * The progress lines: each member as `kubectl get tfed` shows it (its status: phase, trainers,
 * the evaluation loss its trainers reported, bytes per round, the members it sees), as a cluster
 * owner would watch the run; the trainers' logs only feed the summary's per-round curves.
 */
function render(views: MemberView[]): string {
  const rounds = demoSchedule.rounds;
  const committed = Math.max(0, ...views.map((v) => v.status?.round ?? 0));
  const width = 30;
  const filled = Math.round((Math.min(committed, rounds) / rounds) * width);
  const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
  const lines = [`[demo] ${elapsed().padStart(6)}  round ${committed}/${rounds} ${bar}`];
  for (const { member, status } of views) {
    const peers = (status?.members ?? []).map((m) => `${m.id}:${m.state}`).join(" ");
    const loss = status?.evalLoss;
    const perRound = status?.bytesSentPerRound;
    lines.push(
      `[demo]   ${member.padEnd(7)} ${(status?.phase ?? "-").padEnd(9)} ` +
        `trainers ${status?.trainersReady ?? "-"}  ` +
        `eval loss ${loss === undefined ? "-" : loss.toFixed(4)}  ` +
        `sent ${perRound === undefined ? "-" : `${formatBytes(perRound)}/round`}` +
        `${status?.compressionRatio ? ` (×${status.compressionRatio.toFixed(0)} smaller)` : ""}  ` +
        `members [${peers}]`,
    );
  }
  return lines.join("\n");
}

async function summarise(bed: FederationBed, logs: Map<string, TrainerLog>): Promise<void> {
  // Every worker holds the same global model, so any member's log with every round will do.
  const reference = [...logs.values()].reduce((a, b) =>
    b.rounds.length > a.rounds.length ? b : a,
  );
  const final = reference.rounds.at(-1);
  say(`training completed: all members Completed (${elapsed()})`);
  say(`final eval loss ${final?.evalLoss.toFixed(4)} (train loss ${final?.trainLoss.toFixed(4)})`);
  const learned = [...logs.values()].find((log) => log.learned)?.learned;
  if (learned) {
    say(`what the federated model learned (${demoDataNote}):`);
    say(`  trained:   ${learned.trained}`);
    say(`  untrained: ${learned.untrained}`);
  } else {
    say("what the model learned: no trainer logged it (did every trainer stop early?)");
  }

  const finalHashes = contributorsHashes(logs, final?.round);
  const agree = finalHashes.length > 0 && finalHashes.every(([, h]) => h === finalHashes[0]?.[1]);
  say(
    agree
      ? `global model after round ${(final?.round ?? 0) + 1}: bit-identical in ` +
          `${finalHashes.map(([m]) => m).join(", ")} (sha256 ${finalHashes[0]?.[1].slice(0, 16)}…)`
      : `global model hashes after the last round: ${finalHashes.map(([m, h]) => `${m} ${h.slice(0, 16)}`).join(", ")}`,
  );

  const parameters = reference.parameters;
  const contributors = [...logs.entries()].filter(([, l]) => l.rounds.length > 0);
  const sentPerWorker = contributors.map(([, l]) => l.rounds.reduce((n, r) => n + r.bytesSent, 0));
  const meanSent = sentPerWorker.reduce((a, b) => a + b, 0) / Math.max(1, sentPerWorker.length);
  if (parameters) {
    const steps = demoSchedule.rounds * demoSchedule.innerSteps;
    const dataParallel = steps * parameters * 4;
    say(
      `communication: ${formatBytes(meanSent)} sent per worker (mean of ${contributors.map(([m]) => m).join(", ")}) vs ${formatBytes(dataParallel)} ` +
        `for per-step fp32 data-parallel (${steps} steps × ${parameters} parameters × 4 B): ` +
        `${(dataParallel / meanSent).toFixed(0)}× less`,
    );
  } else {
    say(`communication: ${formatBytes(meanSent)} sent per worker (parameter count not logged)`);
  }

  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats(bed.natsUrl, "fedtrain-demo");
    const report = await verifyFederationLedger(nc, federationId);
    say(
      report.ok
        ? `ledger: verified (${report.rounds} rounds hash-chained, ${report.checkpointsVerified} ` +
            `checkpoints match their digests, head ${(report.head ?? "").slice(0, 16)}…)`
        : `ledger: verification FAILED: ${report.problems.map((p) => JSON.stringify(p)).join("; ")}`,
    );
  } finally {
    await nc?.close();
  }

  await mkdir(path.dirname(plotFile), { recursive: true });
  const curves = [
    {
      label: "eval loss",
      points: reference.rounds.map((r) => ({ round: r.round + 1, loss: r.evalLoss })),
    },
    {
      label: "train loss",
      points: reference.rounds.map((r) => ({ round: r.round + 1, loss: r.trainLoss })),
    },
  ];
  await writeFile(plotFile, plotLossPng("fedtrain demo: loss per round", curves));
  say(`loss curve: ${path.relative(repoRoot, plotFile)}`);
}

/** Each member's global-model hash after `round`, for the members that logged that round. */
function contributorsHashes(
  logs: Map<string, TrainerLog>,
  round: number | undefined,
): [string, string][] {
  return [...logs.entries()].flatMap(([member, log]) => {
    const entry = log.rounds.find((r) => r.round === round);
    return entry?.globalHash ? [[member, entry.globalHash] as [string, string]] : [];
  });
}

/** Copies every cluster's pod files and logs out of the test bed before it is removed. */
async function keepPodLogs(): Promise<void> {
  const testbed = federation?.testbed;
  if (!testbed) return;
  await rm(failedLogsDir, { recursive: true, force: true });
  for (const member of testbed.clusters) {
    await cp(testbed.podsDir(member), path.join(failedLogsDir, member), { recursive: true });
  }
  say(`pod logs kept in ${path.relative(repoRoot, failedLogsDir)}/<cluster>/`);
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

main().then(
  async () => {
    if (keep) {
      say(
        `--keep: the test bed stays up (KUBECONFIG=${path.relative(repoRoot, testbedDir)}/<cluster>/kubeconfig); ` +
          `stop it with: npm run testbed -- down --dir ${path.relative(repoRoot, testbedDir)}`,
      );
      process.exit(0);
    }
    await tearDown();
    say(`done in ${elapsed()}`);
    process.exit(0);
  },
  async (error: unknown) => {
    // Ctrl-C: the SIGINT handler tears down and exits 130.
    if (interrupted) return;
    say(`FAILED after ${elapsed()}: ${error instanceof Error ? error.message : String(error)}`);
    await keepPodLogs().catch(() => {});
    try {
      await tearDown();
    } catch (teardown) {
      say(`teardown failed too: ${String(teardown)}`);
    }
    process.exit(1);
  },
);
