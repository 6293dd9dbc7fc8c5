// End-to-end scenario 4, poisoning: cedar runs the poisoning drill (its trainers send their
// update sign-flipped and ×10, `fedtrain.dev/drill-poison-scale: "-10"`). Three federations run
// side by side on the same three clusters: a clean one and a poisoned one with the robust rule, and
// a poisoned one with the plain mean. With the robust rule the final eval loss stays within 10 %
// of the clean run's; with the mean it is clearly worse (the attack is real); the poisoner's
// updates show as dropped in the honest members' status and in the honest trainers' metrics; and
// `fedtrain ledger verify --spec` recomputes the update scores every commit records from the
// stored updates, and they agree.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Aggregation, TrainingFederation } from "../../core/api/types.generated.js";
import type { FederationBed, MemberView } from "../../testbed/federation-bed.js";
import { explain, federationBedPerFile, memberManifest, members } from "./support.js";

const [alpine, , cedar] = members as [string, string, string];
const poisonAnnotation = "fedtrain.dev/drill-poison-scale";
const schedule = { rounds: 10, innerSteps: 20 };
/**
 * The robust rule: updates whose norm is over 3× the round's median are dropped, the rest
 * trimmed-averaged, tolerating one faulty update (one value trimmed at each end). Dropping, not
 * clipping: a clipped sign-flipped update still pulls backwards, and the median of three sparse
 * top-k updates is mostly zero. A round left with two updates after the drop cannot withstand a
 * faulty one and is flagged as unprotected.
 */
const robust: Aggregation = {
  rule: "TrimmedMean",
  tolerate: 1,
  normBound: { action: "Drop", maxMedianMultiple: 3 },
};
const runs = [
  { id: "clean", poisoned: false, aggregation: robust },
  { id: "robust", poisoned: true, aggregation: robust },
  { id: "mean", poisoned: true, aggregation: { rule: "Mean" } as Aggregation },
] as const;

let bed: FederationBed;
// Three federations need three GPUs per cluster: one trainer each.
federationBedPerFile(
  (up) => {
    bed = up;
  },
  // Each run in its own namespace, opted in to the operator when the chart is installed.
  { gpusPerNode: 3, namespaces: runs.map((run) => run.id) },
);

async function manifest(member: string, run: (typeof runs)[number]): Promise<TrainingFederation> {
  const tf = await memberManifest(bed, member);
  tf.metadata = {
    name: run.id,
    namespace: run.id,
    ...(run.poisoned && member === cedar ? { annotations: { [poisonAnnotation]: "-10" } } : {}),
  };
  const federation = tf.spec.federation;
  federation.id = `arith-${run.id}`;
  federation.training = { ...federation.training, ...schedule };
  // Every round waits for all three updates: with two, the median norm is half the poisoner's
  // and the bound no longer tells it apart.
  federation.sync = { ...federation.sync, aggregation: run.aggregation, quorum: { minMembers: 3 } };
  return tf;
}

/** The final eval loss of a run: every member holds the same global model. */
function finalEvalLoss(views: MemberView[]): number {
  const last = views
    .flatMap((v) => v.log.rounds)
    .filter((r) => r.round === schedule.rounds - 1)
    .map((r) => r.evalLoss);
  assert.ok(last.length > 0, "a member logged the last round");
  return last[0]!;
}

/** The highest value of the bounded-updates counter for cedar in the scraped texts. */
function boundedForCedar(texts: string[]): number {
  let highest = 0;
  for (const text of texts)
    for (const line of text.split("\n"))
      if (
        line.startsWith("fedtrain_trainer_updates_bounded_total{") &&
        line.includes(`member="${cedar}"`)
      )
        highest = Math.max(highest, Number(line.split(" ").at(-1)));
  return highest;
}

/** The highest value of the unprotected-rounds counter in the scraped texts; −1 if absent. */
function unprotectedRounds(texts: string[]): number {
  let highest = -1;
  for (const text of texts)
    for (const line of text.split("\n"))
      if (line.startsWith("fedtrain_trainer_rounds_unprotected_total "))
        highest = Math.max(highest, Number(line.split(" ").at(-1)));
  return highest;
}

/** The last value of a per-member gauge for each member, from the scraped texts. */
function memberGauge(texts: string[], name: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const text of texts)
    for (const line of text.split("\n")) {
      const match = new RegExp(`^${name}\\{member="([^"]+)"\\} (\\S+)$`).exec(line);
      if (match) values.set(match[1]!, Number(match[2]));
    }
  return values;
}

test("a sign-flipped ×10 member: the robust rule holds, the mean does not, the poisoner is dropped", async (t) => {
  for (const run of runs)
    for (const member of members) await bed.apply(member, await manifest(member, run));

  let clippedInMetrics = 0;
  let reputation = new Map<string, number>();
  let unprotectedPoisoned = -1;
  let results: Map<string, MemberView[]>;
  try {
    results = await bed.waitFor(
      "all three federations Completed",
      async () => {
        // The honest trainers' metrics, while they run.
        const texts = await bed.scrapeMetrics(alpine, "robust", "robust-trainers");
        clippedInMetrics = Math.max(clippedInMetrics, boundedForCedar(texts));
        unprotectedPoisoned = Math.max(unprotectedPoisoned, unprotectedRounds(texts));
        const seen = memberGauge(texts, "fedtrain_trainer_member_reputation");
        if (seen.size > 0) reputation = seen;
        const all = new Map<string, MemberView[]>();
        for (const run of runs) all.set(run.id, await bed.views(run.id, run.id));
        const done = [...all.values()].every((views) =>
          views.every((v) => v.status?.phase === "Completed"),
        );
        return done ? all : undefined;
      },
      20 * 60_000,
    );
  } catch (error) {
    for (const run of runs) t.diagnostic(await explain(bed, run.id, run.id));
    throw error;
  }

  const loss = Object.fromEntries(runs.map((r) => [r.id, finalEvalLoss(results.get(r.id)!)]));
  t.diagnostic(`final eval loss: ${JSON.stringify(loss)}`);
  assert.ok(
    loss.robust! <= loss.clean! * 1.1,
    `robust ${loss.robust} within 10 % of clean ${loss.clean}`,
  );
  assert.ok(
    loss.mean! > loss.clean! * 1.3,
    `the attack is real: mean ${loss.mean} clearly worse than clean ${loss.clean}`,
  );

  // The honest members' status shows the poisoner's updates bounded, and nobody else's.
  const robustViews = results.get("robust")!;
  const seen = robustViews[0]!.status?.members ?? [];
  const counts = (id: string) => {
    const m = seen.find((x) => x.id === id);
    return (m?.updatesClipped ?? 0) + (m?.updatesDropped ?? 0);
  };
  assert.ok(
    counts(cedar) > 0,
    `cedar's updates bounded in alpine's status: ${JSON.stringify(seen)}`,
  );
  for (const honest of members.filter((m) => m !== cedar))
    assert.equal(counts(honest), 0, `${honest}'s updates were not bounded`);
  assert.ok(clippedInMetrics > 0, "an honest trainer's metrics count cedar's bounded updates");
  // And its score: in the status of an honest member (kubectl get tfed -o yaml), cedar's updates
  // point away from the aggregates, the honest members' along them.
  const reputationIn = (id: string) => seen.find((m) => m.id === id)?.reputation;
  assert.ok(
    (reputationIn(cedar) ?? 0) < 0,
    `cedar's reputation in status: ${JSON.stringify(seen)}`,
  );
  for (const honest of members.filter((m) => m !== cedar))
    assert.ok((reputationIn(honest) ?? 0) > 0, `${honest}'s reputation in status is positive`);
  // The poisoner is visible to the honest: its updates point away from every round's aggregate.
  assert.ok(
    (reputation.get(cedar) ?? 0) < 0,
    `cedar's reputation: ${JSON.stringify([...reputation])}`,
  );
  for (const honest of members.filter((m) => m !== cedar))
    assert.ok((reputation.get(honest) ?? 0) > 0, `${honest}'s reputation is positive`);
  // With the poisoner dropped, two updates are left: those rounds are flagged; the clean run's
  // rounds all had three.
  assert.ok(unprotectedPoisoned > 0, "an honest trainer counts the rounds left with two updates");
  const flagged = (run: string) =>
    results
      .get(run)!
      .flatMap((v) => v.log.rounds)
      .filter((r) => r.unprotected).length;
  assert.ok(flagged("robust") > 0, "the trainers' logs flag the rounds left with two updates");
  assert.ok(results.get("clean")![0]!.log.rounds.length > 0, "the clean run's rounds were logged");
  assert.equal(flagged("clean"), 0, "no clean round is flagged");
  // In the clean run nobody is bounded.
  for (const m of results.get("clean")![0]!.status?.members ?? [])
    assert.equal((m.updatesClipped ?? 0) + (m.updatesDropped ?? 0), 0, `${m.id} in the clean run`);

  // The commits record every update's score; an auditor with the manifest recomputes them from
  // the stored updates, and they agree. Round r's scores are in commit r + 1: the last round's
  // are in no commit.
  for (const run of runs) {
    const ledger = await bed.verifyLedger(`arith-${run.id}`, await manifest(alpine, run));
    assert.equal(ledger.code, 0, ledger.output);
    const verified =
      /update scores of (\d+) rounds recomputed from the stored updates and agree/.exec(
        ledger.output,
      )?.[1];
    assert.ok(Number(verified) >= schedule.rounds - 2, `${run.id}: ${ledger.output}`);
  }
});
