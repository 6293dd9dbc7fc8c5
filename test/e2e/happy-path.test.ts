// End-to-end scenario 1, the happy path: three clusters, fedtrain installed by Helm in each, the
// example federation applied with each member's overlay; the members train the CharTransformer
// (the language-model preset) for the demo's rounds. Every member reaches the last round, the
// eval loss falls below a target, every member's status shows all three members and Ready,
// every round's global-model hash agrees across members, and `fedtrain ledger verify` passes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { demoSchedule } from "../../demo/federation.js";
import type { FederationBed, MemberView } from "../../testbed/federation-bed.js";
import {
  condition,
  explain,
  federationBedPerFile,
  federationId,
  hashDisagreements,
  lastLoggedRound,
  memberManifest,
  members,
  name,
  namespace,
} from "./support.js";

// The untrained model's eval loss is ln(vocabulary) ≈ 2.6 nats; the demo's 30 rounds reach
// about 1.2 on its single-digit problems. The target leaves room for run-to-run noise, not for a
// run that did not learn.
const evalLossTarget = 1.6;

let bed: FederationBed;
federationBedPerFile((up) => {
  bed = up;
});

test("happy path: three members train to the last round with agreeing hashes and a verified ledger", async (t) => {
  for (const member of members) await bed.apply(member, await memberManifest(bed, member));

  // While training, each member's status lists all three members Active and says Ready.
  const sawAllActiveAndReady = new Set<string>();
  // …and `kubectl get tfed` shows its eval loss and bytes per round (from status, not logs).
  const sawProgress = new Map<string, string>();
  let views: MemberView[] = [];
  try {
    views = await bed.waitFor(
      "every member Completed after the last round",
      async () => {
        const current = await bed.views(namespace, name);
        for (const v of current) {
          const active = (v.status?.members ?? []).filter((m) => m.state === "Active");
          if (active.length === members.length && condition(v, "Ready")?.status === "True")
            sawAllActiveAndReady.add(v.member);
          if (!sawProgress.has(v.member) && v.status?.phase === "Training") {
            const table = await bed.kubectl(v.member, "get", "tfed", name, "-n", namespace);
            const [header = "", row = ""] = table.trim().split("\n");
            const column = (title: string) => {
              const start = header.indexOf(title);
              return start < 0 ? "" : (row.slice(start).split(/\s+/)[0] ?? "");
            };
            const evalLoss = Number(column("EVAL-LOSS"));
            const bytes = Number(column("BYTES/ROUND"));
            if (evalLoss > 0 && bytes > 0) sawProgress.set(v.member, `${evalLoss} ${bytes}`);
          }
        }
        // A failed member ends the wait at once (an assertion here would only be retried).
        if (current.some((v) => v.status?.phase === "Failed")) return current;
        const done =
          lastLoggedRound(current) >= demoSchedule.rounds &&
          current.every((v) => v.status?.phase === "Completed");
        return done ? current : undefined;
      },
      12 * 60_000,
    );
  } catch (error) {
    t.diagnostic(await explain(bed));
    throw error;
  }

  if (views.some((v) => v.status?.phase === "Failed")) t.diagnostic(await explain(bed));
  for (const v of views) assert.notEqual(v.status?.phase, "Failed", `${v.member} failed`);
  assert.deepEqual([...sawAllActiveAndReady].sort(), members, "members seen Active and Ready");
  t.diagnostic(
    `kubectl get tfed while training: ${JSON.stringify(Object.fromEntries(sawProgress))}`,
  );
  assert.deepEqual(
    [...sawProgress.keys()].sort(),
    members,
    "every member's kubectl get tfed showed eval loss and bytes per round while training",
  );
  // Where Kubernetes users look first: each member's Events.
  for (const member of members) {
    const described = await bed.kubectl(member, "describe", "tfed", name, "-n", namespace);
    assert.match(described, /Normal\s+Joined/, `${member}: a Joined Event`);
    assert.match(described, /fedtrain\.dev\/operator/, `${member}: Events from the operator`);
  }
  for (const v of views) {
    assert.equal(condition(v, "Ready")?.status, "True", `${v.member} Ready after completion`);
    // A member contributes to nearly every round; its trainer logs every round it applied.
    assert.ok(
      v.log.rounds.length >= demoSchedule.rounds - 2,
      `${v.member} applied only ${v.log.rounds.length} rounds`,
    );
  }
  assert.deepEqual(hashDisagreements(views), [], "global-model hashes per round");

  const final = views
    .flatMap((v) => v.log.rounds)
    .filter((r) => r.round === demoSchedule.rounds - 1);
  assert.ok(final.length > 0, "someone logged the last round");
  const first = views.flatMap((v) => v.log.rounds).find((r) => r.round === 0);
  t.diagnostic(`eval loss ${first?.evalLoss} after round 1, ${final[0]?.evalLoss} at the end`);
  for (const r of final) {
    assert.ok(r.evalLoss < evalLossTarget, `final eval loss ${r.evalLoss} < ${evalLossTarget}`);
    assert.ok(first && r.evalLoss < first.evalLoss, "the eval loss fell over the run");
  }

  // What the demo prints: held-out answers the trained model gets right, beside the untrained.
  const learned = views.flatMap((v) => (v.log.learned ? [v.log.learned] : []));
  assert.ok(learned.length > 0, "a trainer logged what the model learned");
  for (const { accuracy, trained, untrained } of learned) {
    t.diagnostic(`learned: ${trained}; untrained: ${untrained}`);
    assert.ok(accuracy, "answer accuracy is logged for Arithmetic");
    assert.ok(
      accuracy.trained > accuracy.untrained,
      `trained accuracy ${accuracy.trained} > untrained ${accuracy.untrained}`,
    );
  }

  const ledger = await bed.verifyLedger(federationId);
  assert.equal(ledger.code, 0, ledger.output);
  assert.match(ledger.output, new RegExp(`intact: ${demoSchedule.rounds} rounds`));
});
