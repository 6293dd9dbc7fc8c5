// Shared set-up of the end-to-end scenarios: a three-cluster federation bed of its own per test
// file (fedtrain installed by Helm in every cluster), the demo's federation manifest per member,
// and what a failed scenario prints to explain itself.
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import type { TrainingFederation } from "../../core/api/types.generated.js";
import { demoFederation } from "../../demo/federation.js";
import { repoRoot } from "../../scripts/repository.js";
import { FederationBed, type MemberView } from "../../testbed/federation-bed.js";

export const members = ["alpine", "birch", "cedar"];
/** The example federation's name, namespace and id (examples/federation). */
export const name = "arith";
export const namespace = "fedtrain";
export const federationId = "arith";

const verbose = process.env.FEDTRAIN_TEST_VERBOSE === "1";

/**
 * A bed of its own for the calling test file: brought up before the file's tests (and handed to
 * `use`), brought down after them.
 */
export function federationBedPerFile(
  use: (bed: FederationBed) => void,
  options: { operatorReplicas?: number; gpusPerNode?: number; namespaces?: string[] } = {},
): void {
  let bed: FederationBed | undefined;
  before(async () => {
    bed = await startFederationBed(options);
    use(bed);
  });
  after(async () => {
    await bed?.down();
  });
}

/** Brings up the bed; bring it down in an `after` hook. */
async function startFederationBed(
  options: { operatorReplicas?: number; gpusPerNode?: number; namespaces?: string[] } = {},
): Promise<FederationBed> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fedtrain-e2e-"));
  return FederationBed.up({
    dir,
    members,
    ...options,
    log: verbose ? (line) => console.error(line) : undefined,
  });
}

/** The demo's TrainingFederation for `member` (examples/federation overlay, demo schedule). */
export function memberManifest(bed: FederationBed, member: string): Promise<TrainingFederation> {
  return demoFederation(bed.testbed.binaries.kubectl, repoRoot, member, bed.natsUrl);
}

/** The last round any member's trainers logged, counted from 1 (0 before the first). */
export function lastLoggedRound(views: MemberView[]): number {
  return Math.max(0, ...views.map((v) => (v.log.rounds.at(-1)?.round ?? -1) + 1));
}

/**
 * Rounds whose logged global-model hashes differ, between members or between the pods of one
 * member (every pod's every application counts): [round, hashes].
 */
export function hashDisagreements(views: MemberView[]): [number, string[]][] {
  const byRound = new Map<number, Set<string>>();
  for (const { log } of views)
    for (const r of log.applications) {
      const set = byRound.get(r.round) ?? new Set<string>();
      set.add(r.globalHash);
      byRound.set(r.round, set);
    }
  return [...byRound].filter(([, set]) => set.size > 1).map(([r, set]) => [r, [...set]]);
}

/** A condition of a member's status. */
export function condition(view: MemberView, type: string) {
  return view.status?.conditions?.find((c) => c.type === type);
}

/**
 * Polls every member's view of the TrainingFederation `objectNamespace/objectName` until `check`
 * returns a value; on a timeout the test's diagnostics get every member's status and logs.
 */
export async function waitForViews<T>(
  bed: FederationBed,
  t: { diagnostic: (message: string) => void },
  what: string,
  check: (views: MemberView[]) => T | undefined,
  objectNamespace = namespace,
  objectName = name,
): Promise<T> {
  try {
    return await bed.waitFor(
      what,
      async () => check(await bed.views(objectNamespace, objectName)),
      8 * 60_000,
    );
  } catch (error) {
    t.diagnostic(await explain(bed, objectNamespace, objectName));
    throw error;
  }
}

/** A summary of every member's status and the tail of its pods' logs, for a failed scenario. */
export async function explain(
  bed: FederationBed,
  objectNamespace = namespace,
  objectName = name,
): Promise<string> {
  const lines: string[] = [];
  for (const member of bed.members) {
    const { status } = await bed.view(member, objectNamespace, objectName);
    lines.push(`--- ${member}: phase ${status?.phase} round ${status?.round}`);
    for (const c of status?.conditions ?? [])
      lines.push(`    ${c.type}=${c.status} ${c.reason}: ${c.message}`);
    for (const m of status?.members ?? [])
      lines.push(`    member ${m.id} ${m.state} ${m.reason ?? ""}`);
    const podsDir = bed.testbed.podsDir(member);
    const pods = await readdir(podsDir).catch(() => [] as string[]);
    for (const pod of pods.sort()) {
      const logsDir = path.join(podsDir, pod, "logs");
      for (const file of await readdir(logsDir).catch(() => [] as string[])) {
        const text = await readFile(path.join(logsDir, file), "utf8").catch(() => "");
        const tail = text.trimEnd().split("\n").slice(-8);
        lines.push(`    ${pod}/${file}:`, ...tail.map((l) => `      ${l.slice(0, 400)}`));
      }
    }
  }
  return lines.join("\n");
}
