// End-to-end scenario 3, faults: three clusters with two operator replicas each, training the
// example federation on a longer schedule with a checkpoint every other round. While the run is
// in progress, one fault after the other: kill -9 of the coordinator's trainer, kill -9 of one
// cluster's operator leader, a restart of the nats-server, and one cluster's API server stopped
// for 30 s. The run still completes in every member, every round is committed once (the
// hash-chained ledger verifies with exactly the schedule's rounds), every pod's every applied
// round has the same global-model hash, and each fault is seen to have happened and healed: the
// killed trainer's replacement pod restored a checkpoint and rejoined, the standby operator took
// the Lease, the nats-server is a new process, the API server came back.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { specHashBytes } from "../../core/api/index.js";
import type { TrainingFederation } from "../../core/api/types.generated.js";
import { connectNats, readFederationView } from "../../core/protocol/index.js";
import { protocolSpecOf } from "../../operator/src/trainingfederation/federation.js";
import {
  type FederationBed,
  type MemberView,
  releaseNamespace,
} from "../../testbed/federation-bed.js";
import {
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

// Long enough that every fault and the killed trainer's rejoin fall inside the run (rounds took
// 1.4-9 s on a 2-core machine, from idle to busy); few inner steps keep the rounds short.
const schedule = { rounds: 40, innerSteps: 10 };
// Rounds the federation commits between two faults: each fault meets a run that is training.
const roundsBetweenFaults = 2;
// A checkpoint every other round: the killed trainer's replacement restores a recent one.
const checkpointEveryRounds = 2;
const apiserverOutageMs = 30_000;
/** The operator's leader-election Lease (the chart's default name). */
const operatorLease = "fedtrain-operator";
const trainerPods = `${name}-trainers`;
// Every wait is for progress that takes seconds to a few minutes when healthy; the bound only
// catches a run that is stuck.
const stepTimeoutMs = 6 * 60_000;

let bed: FederationBed;
federationBedPerFile(
  (up) => {
    bed = up;
  },
  { operatorReplicas: 2 },
);

/** The demo's manifest for `member` on this scenario's schedule. */
async function manifest(member: string): Promise<TrainingFederation> {
  const tf = await memberManifest(bed, member);
  tf.spec.federation.training = { ...tf.spec.federation.training, ...schedule };
  tf.spec.federation.sync = { ...tf.spec.federation.sync, checkpointEveryRounds };
  return tf;
}

type Diagnostics = { diagnostic: (message: string) => void };

/** Waits for `check` on every member's view; a member that fails meanwhile fails the test. */
async function waitForViews<T>(
  t: Diagnostics,
  what: string,
  check: (views: MemberView[]) => T | undefined | Promise<T | undefined>,
): Promise<T> {
  let outcome: { value: T } | { failed: string };
  try {
    outcome = await bed.waitFor(
      what,
      async () => {
        const views = await bed.views(namespace, name);
        // A failed member never recovers: say so at once rather than at the timeout.
        const failed = views.find((v) => v.status?.phase === "Failed");
        if (failed) return { failed: failed.member };
        const value = await check(views);
        return value === undefined ? undefined : { value };
      },
      stepTimeoutMs,
    );
  } catch (error) {
    t.diagnostic(await explain(bed));
    throw error;
  }
  if ("failed" in outcome) {
    t.diagnostic(await explain(bed));
    assert.fail(`${outcome.failed} failed while waiting for ${what}`);
  }
  return outcome.value;
}

/** Waits until some member's trainers logged round `round` (counted from 1). */
function untilRound(t: Diagnostics, round: number): Promise<number> {
  return waitForViews(t, `round ${round}`, (views) => {
    const logged = lastLoggedRound(views);
    return logged >= round ? logged : undefined;
  });
}

/** A fault injected after the run's last round would prove nothing. */
function assertMidRun(round: number, fault: string): void {
  assert.ok(
    round < schedule.rounds,
    `${fault}: the run was already at round ${round} of ${schedule.rounds}; lengthen the schedule`,
  );
}

/** The worker holding the coordinator lease, as NATS says. */
async function coordinator(tf: TrainingFederation, specHash: string) {
  const nc = await connectNats(bed.natsUrl, "fedtrain-e2e-faults");
  try {
    const view = await readFederationView(nc, protocolSpecOf(tf), specHashBytes(specHash));
    return view.coordinator;
  } finally {
    await nc.close();
  }
}

/** The single running trainer pod of a member (the scenario runs one replica per member). */
async function trainerPod(member: string): Promise<string | undefined> {
  const pods = await bed.runningPods(member, namespace, trainerPods);
  return pods.length === 1 ? pods[0] : undefined;
}

/** Every trainer pod of a member that the node agents ran, with its trainer log. */
async function trainerPodLogs(member: string): Promise<{ pod: string; log: string }[]> {
  const podsDir = bed.testbed.podsDir(member);
  const prefix = `${namespace}_${trainerPods}-`;
  const folders = (await readdir(podsDir)).filter((f) => f.startsWith(prefix));
  return Promise.all(
    folders.map(async (folder) => ({
      pod: folder.slice(namespace.length + 1, folder.lastIndexOf("_")),
      log: await readFile(path.join(podsDir, folder, "logs", "trainer.log"), "utf8").catch(
        () => "",
      ),
    })),
  );
}

/** The holder of a member's operator Lease: `<pod>_<incarnation>`. */
async function operatorLeader(member: string): Promise<string> {
  const holder = await bed.kubectl(
    member,
    "get",
    "lease",
    operatorLease,
    "-n",
    releaseNamespace,
    "-o",
    "jsonpath={.spec.holderIdentity}",
  );
  return holder.trim();
}

function podOfIdentity(identity: string): string {
  return identity.slice(0, identity.lastIndexOf("_"));
}

/** The pid of the nats-server, from the test bed's status. */
async function natsPid(): Promise<number | undefined> {
  const nats = (await bed.testbed.status()).find((c) => c.component === "nats");
  return nats?.running ? nats.pid : undefined;
}

test("faults: trainer, operator leader, nats-server and API server fail mid-run; the run completes intact", async (t) => {
  const manifests = new Map<string, TrainingFederation>();
  for (const member of members) {
    const tf = await manifest(member);
    manifests.set(member, tf);
    await bed.apply(member, tf);
  }

  // 1. kill -9 of the coordinator's trainer, once a checkpoint is there to rejoin from.
  let round = await untilRound(t, checkpointEveryRounds + 1);
  const specHash = await waitForViews(
    t,
    "the spec hash in status",
    (views) => views.find((v) => v.status?.federationSpecHash)?.status?.federationSpecHash,
  );
  const { memberId: crashed } = await waitForViews(t, "a coordinator", async () =>
    coordinator(manifests.get(members[0]!)!, specHash),
  );
  const killedPod = await waitForViews(t, `${crashed}'s running trainer pod`, () =>
    trainerPod(crashed),
  );
  assertMidRun(round, "trainer kill");
  const killedPid = await bed.killContainer(crashed, namespace, killedPod, "trainer");
  t.diagnostic(`round ${round}: killed ${crashed}'s trainer ${killedPod} (pid ${killedPid})`);

  // 2. kill -9 of one cluster's operator leader, rounds later (the others carried on meanwhile).
  round = await untilRound(t, round + roundsBetweenFaults);
  const operatorMember = members.find((m) => m !== crashed)!;
  const leader = await operatorLeader(operatorMember);
  assertMidRun(round, "operator kill");
  await bed.killContainer(operatorMember, releaseNamespace, podOfIdentity(leader), "operator");
  t.diagnostic(`round ${round}: killed ${operatorMember}'s operator leader ${leader}`);

  // 3. nats-server restarted (JetStream keeps its store on disk).
  round = await untilRound(t, round + roundsBetweenFaults);
  const natsBefore = await natsPid();
  assertMidRun(round, "nats-server restart");
  await bed.testbed.restart("nats");
  const natsAfter = await natsPid();
  t.diagnostic(`round ${round}: restarted nats-server (pid ${natsBefore} → ${natsAfter})`);
  assert.ok(natsBefore && natsAfter && natsAfter !== natsBefore, "a new nats-server process");

  // 4. A third cluster's API server stopped for 30 s.
  round = await untilRound(t, round + roundsBetweenFaults);
  const outageMember = members.find((m) => m !== operatorMember && m !== crashed)!;
  const apiserver = { cluster: outageMember, component: "apiserver" } as const;
  assertMidRun(round, "API server outage");
  await bed.testbed.stop(apiserver);
  t.diagnostic(`round ${round}: stopped ${outageMember}'s API server`);
  await assert.rejects(bed.kubectl(outageMember, "get", "namespaces"), "the API server is down");
  await sleep(apiserverOutageMs);
  await bed.testbed.start(apiserver);
  const afterOutage = lastLoggedRound(await bed.views(namespace, name));
  t.diagnostic(`round ${afterOutage}: started ${outageMember}'s API server again`);
  // Trainers need no API server: the federation, cedar's trainer included, kept committing
  // rounds while it was down. (A fast machine may even finish the run within the outage; the
  // operator's healing shows below, when every member's status reaches Completed.)
  assert.ok(afterOutage > round, `no round was committed during the API server outage`);

  // Another incarnation took the Lease once it expired (the killed leader never released it):
  // the standby replica, or the killed container as the kubelet restarted it, with a new identity.
  const newLeader = await waitForViews(
    t,
    `a new operator leader in ${operatorMember}`,
    async () => {
      const holder = await operatorLeader(operatorMember);
      return holder && holder !== leader ? holder : undefined;
    },
  );
  t.diagnostic(
    `${operatorMember}'s new operator leader: ${newLeader} (${podOfIdentity(newLeader) === podOfIdentity(leader) ? "the restarted container" : "the standby replica"})`,
  );

  // The Job replaced the killed trainer's pod, which rejoined from a checkpoint.
  const killedExit = await bed.kubectl(
    crashed,
    "get",
    "pod",
    killedPod,
    "-n",
    namespace,
    "-o",
    "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
  );
  assert.equal(killedExit, "137", `${killedPod} ended by SIGKILL`);
  // It may have finished by now on a fast machine: any pod but the killed one counts.
  const replacement = await waitForViews(t, `${crashed}'s replacement trainer rejoined`, async () =>
    (await trainerPodLogs(crashed)).find(
      ({ pod, log }) => pod !== killedPod && /joined at round [1-9]/.test(log),
    ),
  );
  const restored = /restored checkpoint of round (\d+)/.exec(replacement.log);
  assert.ok(restored, `${replacement.pod} restored a checkpoint`);
  assert.ok(Number(restored[1]) >= checkpointEveryRounds, "from a checkpoint of the run");

  // The run completes everywhere.
  const views = await waitForViews(t, "every member Completed after the last round", (current) =>
    lastLoggedRound(current) >= schedule.rounds &&
    current.every((v) => v.status?.phase === "Completed")
      ? current
      : undefined,
  );

  assert.deepEqual(hashDisagreements(views), [], "global-model hashes per round, every pod");
  for (const v of views) {
    // A pod never applies a round twice: its logged rounds only go up.
    const lastByPod = new Map<string, number>();
    for (const { pod, round: applied } of v.log.applications) {
      assert.ok(applied > (lastByPod.get(pod) ?? -1), `${pod} applied round ${applied} again`);
      lastByPod.set(pod, applied);
    }
    assert.equal(
      v.log.rounds.at(-1)?.round,
      schedule.rounds - 1,
      `${v.member}'s trainers reached the last round`,
    );
  }
  const crashedRounds = views.find((v) => v.member === crashed)!.log.applications;
  assert.ok(
    crashedRounds.some((a) => a.pod === replacement.pod),
    `${crashed}'s replacement pod trained after rejoining`,
  );

  const ledger = await bed.verifyLedger(federationId);
  assert.equal(ledger.code, 0, ledger.output);
  assert.match(ledger.output, new RegExp(`intact: ${schedule.rounds} rounds`));
});
