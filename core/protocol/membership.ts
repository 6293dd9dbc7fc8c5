// What the operator does on NATS: register and deregister its member (the finalizer), read the
// federation view for status, and (for organisers) pause or resume the federation.
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Admission } from "./admission.js";
import { ControlState } from "./control.js";
import { AdmissionError, FederationNotFoundError } from "./errors.js";
import { equalBytes, keyPairFromPrivate, sha256, toBase64, toHex } from "./identity.js";
import { workerKey } from "./inbox.js";
import {
  type FederationResources,
  federationNames,
  openExistingFederation,
  openFederation,
  publishDurable,
  readStream,
} from "./resources.js";
import { settingsWith } from "./settings.js";
import type {
  FederationView,
  MemberScoreReport,
  MemberView,
  ModelDisagreement,
  ProtocolSettings,
  ProtocolSpec,
  WorkerHeartbeat,
  WorkerView,
} from "./types.js";
import {
  decodeCheckpoint,
  decodeCommit,
  decodeHeartbeat,
  decodeLease,
  decodeMember,
  decodeRoundStatus,
  encodeControl,
  encodeMember,
  PROTOCOL_REVISION,
} from "./wire.js";

type Timings = Pick<ProtocolSettings, "workerTtlMs" | "leaseTtlMs">;

function timingsOf(settings?: Partial<ProtocolSettings>): Timings {
  return settingsWith(settings);
}

/**
 * Registers this member in the federation (idempotent; updates the spec hash when it changed).
 * Throws AdmissionError when the member id is registered with another key.
 */
export async function registerMember(
  nc: NatsConnection,
  member: {
    federationId: string;
    memberId: string;
    specHash: Uint8Array;
    privateKey: Uint8Array;
    settings?: Partial<ProtocolSettings>;
  },
): Promise<void> {
  const resources = await openFederation(nc, member.federationId, timingsOf(member.settings));
  await registerMemberRecord(resources, member);
}

/** Registers (or updates) a member record; refuses a member id held by another key. */
export async function registerMemberRecord(
  resources: Pick<FederationResources, "members">,
  member: { memberId: string; specHash: Uint8Array; privateKey: Uint8Array },
): Promise<void> {
  const { publicKey } = keyPairFromPrivate(member.privateKey);
  const record = encodeMember(
    {
      memberId: member.memberId,
      specHash: member.specHash,
      registeredAtMs: Date.now(),
      revision: PROTOCOL_REVISION,
    },
    member.privateKey,
  );
  const existing = await resources.members.get(member.memberId);
  if (existing && existing.operation === "PUT") {
    let current: ReturnType<typeof decodeMember> | undefined;
    try {
      current = decodeMember(existing.value);
    } catch {
      current = undefined;
    }
    if (current && !equalBytes(current.signer, publicKey))
      throw new AdmissionError(
        `member id ${member.memberId} is registered with another public key: deregister it with that key, or choose another member id`,
      );
    if (
      current &&
      equalBytes(current.body.specHash, member.specHash) &&
      current.body.revision === PROTOCOL_REVISION
    )
      return;
    await resources.members.update(member.memberId, record, existing.revision);
    return;
  }
  try {
    await resources.members.create(member.memberId, record);
  } catch (error) {
    throw new AdmissionError(`member id ${member.memberId} was registered concurrently`, {
      cause: error,
    });
  }
}

/**
 * Whether a federation's resources exist. The other calls here open them with create semantics;
 * asking first keeps a reader or a leaving member from creating a federation's streams and
 * buckets (whose TTLs the first member fixes) before any member registered.
 */
export async function federationExists(nc: NatsConnection, federationId: string): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(`KV_${federationNames(federationId).membersBucket}`);
    return true;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)
      return false;
    throw error;
  }
}

/** What deregisterMember found: its record removed, no record, or a record of another key. */
export type Deregistration = "deregistered" | "not-registered" | "other-key";

/**
 * Removes this member and its workers' heartbeats (idempotent; tolerates a member that never
 * registered, and a federation that was never created, which it does not create). Only the record signed with this key is removed: a member id registered with
 * another key is someone else's (or this member's after a new key), and stays.
 */
export async function deregisterMember(
  nc: NatsConnection,
  member: { federationId: string; memberId: string; privateKey: Uint8Array },
): Promise<Deregistration> {
  let resources: Awaited<ReturnType<typeof openExistingFederation>>;
  try {
    resources = await openExistingFederation(nc, member.federationId);
  } catch (error) {
    if (error instanceof FederationNotFoundError) return "not-registered";
    throw error;
  }
  const { publicKey } = keyPairFromPrivate(member.privateKey);
  const entry = await resources.members.get(member.memberId);
  let result: Deregistration = "not-registered";
  if (entry && entry.operation === "PUT") {
    try {
      if (!equalBytes(decodeMember(entry.value).signer, publicKey)) return "other-key";
    } catch {
      // A malformed record under our id is ours to remove.
    }
    await resources.members.delete(member.memberId);
    result = "deregistered";
  }
  for await (const key of await resources.workers.keys(`${member.memberId}.*`))
    await resources.workers.delete(key);
  return result;
}

/**
 * Publishes an organiser-signed control message: pause or resume the whole federation, exclude a
 * member or readmit it. Its sequence is the current time in ms unless given.
 */
export async function publishControl(
  nc: NatsConnection,
  federationId: string,
  control:
    | { action: "pause" | "resume"; reason?: string; sequence?: number }
    | { action: "exclude" | "readmit"; memberId: string; reason?: string; sequence?: number },
  organiserPrivateKey: Uint8Array,
): Promise<void> {
  const resources = await openFederation(nc, federationId, timingsOf());
  const message = encodeControl(
    {
      action: control.action,
      memberId: "memberId" in control ? control.memberId : "",
      sequence: control.sequence ?? Date.now(),
      issuedAtMs: Date.now(),
      reason: control.reason ?? "",
    },
    organiserPrivateKey,
  );
  await publishDurable(resources.js, resources.names.controlSubject, message, {}, 10_000);
}

/**
 * Reads the federation as seen from NATS, judged by this member's spec and spec hash. Creates
 * nothing: throws {@link FederationNotFoundError} while no member has created the federation.
 */
export async function readFederationView(
  nc: NatsConnection,
  spec: ProtocolSpec,
  specHash: Uint8Array,
): Promise<FederationView> {
  const resources = await openExistingFederation(nc, spec.id);
  const admission = new Admission(spec, specHash);

  const members = new Map<
    string,
    { publicKey: Uint8Array; specHash: Uint8Array; revision: number }
  >();
  for await (const key of await resources.members.keys()) {
    const entry = await resources.members.get(key);
    if (entry?.operation !== "PUT") continue;
    try {
      const { body, signer } = decodeMember(entry.value);
      if (body.memberId === key)
        members.set(key, { publicKey: signer, specHash: body.specHash, revision: body.revision });
    } catch {
      // Malformed records are not members.
    }
  }

  const workers = new Map<string, { hb: WorkerHeartbeat; at: Date }[]>();
  for await (const key of await resources.workers.keys()) {
    const entry = await resources.workers.get(key);
    if (entry?.operation !== "PUT") continue;
    try {
      const { body, signer } = decodeHeartbeat(entry.value);
      const member = members.get(body.memberId);
      if (workerKey(body.memberId, body.workerId) !== key || !member) continue;
      if (!equalBytes(member.publicKey, signer)) continue;
      const list = workers.get(body.memberId) ?? [];
      list.push({ hb: body, at: entry.created });
      workers.set(body.memberId, list);
    } catch {
      // Malformed heartbeats are not workers.
    }
  }

  const contributed = new Map<string, number>();
  let lastCommit: FederationView["lastCommit"];
  let lastCheckpoint: FederationView["lastCheckpoint"];
  let round = 0;
  let prev: Uint8Array = new Uint8Array(32);
  for (const { data } of await readStream(resources, resources.names.ledgerStream)) {
    try {
      const { body } = decodeCommit(data);
      if (body.round !== round + 1 || !equalBytes(body.prevHash, prev)) continue;
      round = body.round;
      prev = sha256(data);
      for (const m of new Set(body.entries.map((e) => e.memberId)))
        contributed.set(m, (contributed.get(m) ?? 0) + 1);
      lastCommit = {
        round,
        hash: toHex(prev),
        entries: body.entries.length,
        committedAt: new Date(body.committedAtMs).toISOString(),
      };
    } catch {
      // The workers drop and count invalid commits; the view skips them.
    }
  }
  const checkpointEntry = await resources.state.get("checkpoint");
  if (checkpointEntry?.operation === "PUT") {
    try {
      const { body } = decodeCheckpoint(checkpointEntry.value);
      lastCheckpoint = { round: body.round, digest: toHex(body.digest), size: body.size };
    } catch {
      lastCheckpoint = undefined;
    }
  }
  let roundStatus: FederationView["roundStatus"];
  const statusEntry = await resources.state.get("round");
  if (statusEntry?.operation === "PUT") {
    try {
      const status = decodeRoundStatus(statusEntry.value).body;
      // The status of the open round, or the run's end after its last committed round.
      if (status.round === round + 1 || (status.phase === "completed" && status.round === round))
        roundStatus = status;
    } catch {
      roundStatus = undefined;
    }
  }
  let coordinator: FederationView["coordinator"];
  const leaseEntry = await resources.lease.get("coordinator");
  if (leaseEntry?.operation === "PUT") {
    try {
      const { memberId, workerId } = decodeLease(leaseEntry.value).body;
      coordinator = { memberId, workerId };
    } catch {
      coordinator = undefined;
    }
  }
  const control = new ControlState(admission);
  for (const { data, storedAtMs } of await readStream(resources, resources.names.controlStream)) {
    try {
      control.apply(data, storedAtMs);
    } catch {
      // Unsigned, replayed or malformed control messages change nothing.
    }
  }

  const admittedHeartbeats = [...workers]
    .filter(([memberId]) => {
      const member = members.get(memberId)!;
      return !admission.refusal(memberId, member.publicKey, member.specHash, member.revision);
    })
    .flatMap(([, list]) => list.map(({ hb }) => hb));
  const bounded = boundedUpdatesOf(admittedHeartbeats);
  const scores = memberScoresOf(admittedHeartbeats);
  const memberViews: MemberView[] = [];
  const losses: number[] = [];
  for (const [memberId, member] of [...members].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const list = workers.get(memberId) ?? [];
    const workerViews: WorkerView[] = list.map(({ hb, at }) => ({
      workerId: hb.workerId,
      state: hb.state === "active" ? "Active" : "Leaving",
      lastHeartbeat: at.toISOString(),
      appliedRound: hb.appliedRound,
      modelHash: toHex(hb.modelHash),
      loss: hb.loss,
      ...(hb.progress ? { progress: hb.progress } : {}),
    }));
    const refusal = admission.refusal(memberId, member.publicKey, member.specHash, member.revision);
    for (const { hb } of list) if (!refusal && hb.loss !== undefined) losses.push(hb.loss);
    const last = list.map((w) => w.at.getTime()).sort((a, b) => b - a)[0];
    memberViews.push({
      memberId,
      publicKey: toBase64(member.publicKey),
      specHash: toHex(member.specHash),
      state: refusal
        ? "Refused"
        : control.isExcluded(memberId)
          ? "Excluded"
          : workerViews.some((w) => w.state === "Active")
            ? "Active"
            : "Idle",
      reason: refusal ?? exclusionReason(control, memberId),
      lastHeartbeat: last === undefined ? undefined : new Date(last).toISOString(),
      roundsContributed: contributed.get(memberId) ?? 0,
      updatesClipped: bounded.get(memberId)?.clipped ?? 0,
      updatesDropped: bounded.get(memberId)?.dropped ?? 0,
      score: scores.get(memberId),
      workers: workerViews,
    });
  }

  return {
    federationId: spec.id,
    round: round + 1,
    roundStatus,
    paused: control.paused,
    coordinator,
    lastCommit,
    lastCheckpoint,
    loss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : undefined,
    members: memberViews,
    disagreements: disagreementsOf(memberViews.filter((m) => m.state !== "Refused")),
  };
}

function exclusionReason(control: ControlState, memberId: string): string {
  const reason = control.excluded.get(memberId);
  if (reason === undefined) return "";
  return `excluded by an organiser${reason ? `: ${reason}` : ""}`;
}

/**
 * Per member, the most clipped and the most dropped updates any of the heartbeats reports. Every
 * worker bounds the same committed sets, so the counts differ only in how long each worker has
 * been counting: the highest is the longest view.
 */
export function boundedUpdatesOf(
  heartbeats: readonly WorkerHeartbeat[],
): Map<string, { clipped: number; dropped: number }> {
  const out = new Map<string, { clipped: number; dropped: number }>();
  for (const hb of heartbeats)
    for (const { memberId, clipped, dropped } of hb.boundedUpdates) {
      const best = out.get(memberId) ?? { clipped: 0, dropped: 0 };
      out.set(memberId, {
        clipped: Math.max(best.clipped, clipped),
        dropped: Math.max(best.dropped, dropped),
      });
    }
  return out;
}

/**
 * Per member, the score of the heartbeat that scored it over the most rounds (the longest view;
 * every worker scores the same committed updates against the same aggregates).
 */
export function memberScoresOf(
  heartbeats: readonly WorkerHeartbeat[],
): Map<string, MemberScoreReport> {
  const out = new Map<string, MemberScoreReport>();
  for (const hb of heartbeats)
    for (const score of hb.memberScores) {
      const best = out.get(score.memberId);
      if (!best || score.rounds > best.rounds) out.set(score.memberId, score);
    }
  return out;
}

/** Workers at the same applied round whose model hash differs from that round's majority. */
export function disagreementsOf(members: readonly MemberView[]): ModelDisagreement[] {
  const byRound = new Map<number, { memberId: string; workerId: string; hash: string }[]>();
  for (const m of members)
    for (const w of m.workers) {
      if (w.appliedRound === 0) continue;
      const list = byRound.get(w.appliedRound) ?? [];
      list.push({ memberId: m.memberId, workerId: w.workerId, hash: w.modelHash });
      byRound.set(w.appliedRound, list);
    }
  const out: ModelDisagreement[] = [];
  for (const [round, list] of byRound) {
    const votes = new Map<string, number>();
    for (const w of list) votes.set(w.hash, (votes.get(w.hash) ?? 0) + 1);
    if (votes.size < 2) continue;
    const majority = [...votes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0];
    for (const w of list)
      if (w.hash !== majority)
        out.push({
          round,
          worker: { memberId: w.memberId, workerId: w.workerId },
          expected: majority,
          reported: w.hash,
        });
  }
  return out;
}
