// End-to-end scenario 2, churn: one member's TrainingFederation is deleted mid-run → its
// finalizer takes it out of the federation cleanly (its trainers leave, its record is
// deregistered, its children are garbage-collected) and the other two members carry the run on;
// applied again → it rejoins from the federation's latest checkpoint and contributes again.
// The run completes with agreeing global-model hashes and a verified ledger.
import assert from "node:assert/strict";
import { test } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { TrainingFederation } from "../../core/api/types.generated.js";
import { connectNats, federationNames } from "../../core/protocol/index.js";
import type { FederationBed, MemberView } from "../../testbed/federation-bed.js";
import {
  federationBedPerFile,
  federationId,
  hashDisagreements,
  lastLoggedRound,
  memberManifest,
  members,
  name,
  namespace,
  waitForViews,
} from "./support.js";

const [alpine, birch, cedar] = members as [string, string, string];
// Long enough to leave at round 3, go on without cedar and rejoin with rounds to spare: the demo
// model's rounds take about 2 s here, and leaving (finalizer, leave Job, garbage collection) plus
// two rounds without cedar take about 15 s, so 30 rounds leave cedar well over ten to rejoin in.
const schedule = { rounds: 30, innerSteps: 15 };

let bed: FederationBed;
federationBedPerFile((up) => {
  bed = up;
});

async function manifest(member: string): Promise<TrainingFederation> {
  const tf = await memberManifest(bed, member);
  tf.spec.federation.training = { ...tf.spec.federation.training, ...schedule };
  // Frequent checkpoints, so that the returning member has a recent one to start from.
  tf.spec.federation.sync = { ...tf.spec.federation.sync, checkpointEveryRounds: 2 };
  return tf;
}

const cedarSeenBy = (v: MemberView | undefined) => v?.status?.members?.find((m) => m.id === cedar);

test("a member leaves mid-run and rejoins from the latest checkpoint", async (t) => {
  const until = <T>(what: string, check: (views: MemberView[]) => T | undefined) =>
    waitForViews(bed, t, what, check);
  for (const member of members) await bed.apply(member, await manifest(member));

  const before = await until("round 3 committed with cedar contributing", (views) => {
    const a = views[0]!;
    return (a.status?.round ?? 0) >= 3 && (cedarSeenBy(a)?.roundsContributed ?? 0) > 0
      ? a
      : undefined;
  });
  const contributedBeforeLeaving = cedarSeenBy(before)?.roundsContributed ?? 0;

  // cedar leaves: kubectl delete waits for the finalizer, which stops the trainers and runs the
  // leave Job that deregisters the member (within the operator's 3-minute leave deadline).
  await bed.delete(cedar, namespace, name, 240_000);
  const atLeave = (await bed.view(alpine, namespace, name)).status;
  const leftAt = atLeave?.round ?? 0;
  const contributedAtLeave =
    atLeave?.members?.find((m) => m.id === cedar)?.roundsContributed ?? contributedBeforeLeaving;
  // Garbage collection runs after the owner is gone, asynchronously.
  const children = async () =>
    (await bed.kubectl(cedar, "get", "jobs,configmaps,secrets", "-n", namespace, "-o", "name"))
      .split("\n")
      .filter((line) => line.includes(name));
  await bed
    .waitFor(
      "cedar's children garbage-collected",
      async () => ((await children()).length === 0 ? true : undefined),
      60_000,
    )
    .catch(async () => {
      assert.deepEqual(
        await children(),
        [],
        "cedar's Jobs (trainers and leave), ConfigMap and key Secret are garbage-collected",
      );
    });
  // The leave Job deregistered cedar: its member record is gone from NATS.
  const nc = await connectNats(bed.natsUrl, "churn-test");
  try {
    const records = await new Kvm(jetstream(nc)).open(federationNames(federationId).membersBucket);
    assert.notEqual((await records.get(cedar))?.operation, "PUT", "cedar's record is deregistered");
  } finally {
    await nc.close();
  }
  // alpine and birch carry on: two more rounds commit without cedar, who is no longer active.
  await until("two rounds committed by alpine and birch after cedar left", (views) => {
    const a = views[0]!;
    const gone = cedarSeenBy(a) === undefined || cedarSeenBy(a)?.state === "Left";
    return gone && (a.status?.round ?? 0) >= leftAt + 2 ? a : undefined;
  });
  // An update cedar submitted just before it stopped may still be in the round after it left.
  // A deregistered member may be missing from the view until it registers again.
  const awayCount =
    cedarSeenBy((await bed.views(namespace, name))[0])?.roundsContributed ?? contributedAtLeave;
  assert.ok(
    awayCount <= contributedAtLeave + 1,
    `cedar contributed ${awayCount - contributedAtLeave} rounds while it was away`,
  );

  // cedar comes back with the same manifest: it starts from the latest checkpoint.
  const rejoinedAt = (await bed.view(alpine, namespace, name)).status?.round ?? 0;
  await bed.apply(cedar, await manifest(cedar));
  const views = await until("every member Completed after the last round", (current) => {
    const done =
      lastLoggedRound(current) >= schedule.rounds &&
      current.every((v) => v.status?.phase === "Completed");
    return done ? current : undefined;
  });

  const log = await bed.trainerMessages(cedar, namespace, name);
  const restored = log.find((line) => /restored checkpoint of round (\d+)/.test(line));
  assert.ok(restored, "cedar's new trainer restored a checkpoint");
  const restoredRound = Number(/restored checkpoint of round (\d+)/.exec(restored)?.[1]);
  assert.ok(
    restoredRound >= rejoinedAt - 2,
    `restored round ${restoredRound}, not the latest checkpoint before round ${rejoinedAt}`,
  );
  const cedarView = views[2]!;
  assert.ok(
    cedarView.log.rounds.some((r) => r.round >= rejoinedAt),
    "cedar applied rounds after rejoining",
  );
  const contributedAtEnd = cedarSeenBy(views[0])?.roundsContributed ?? 0;
  assert.ok(
    contributedAtEnd > Math.max(awayCount, contributedAtLeave + 1),
    `cedar contributed again (${awayCount} rounds before rejoining, ${contributedAtEnd} at the end)`,
  );
  assert.deepEqual(hashDisagreements(views), [], "global-model hashes per round");
  for (const member of [alpine, birch]) assert.ok(views.find((v) => v.member === member));
  const ledger = await bed.verifyLedger(federationId);
  assert.equal(ledger.code, 0, ledger.output);
  assert.match(ledger.output, new RegExp(`intact: ${schedule.rounds} rounds`));
});
