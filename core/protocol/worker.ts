// A federation worker: announces itself, follows the ledger, sends its updates, applies every
// commit to the caller's model in canonical order, and, while it holds the coordinator lease,
// closes rounds. Every worker runs the coordinator code; the lease decides which one acts.
import { type ConsumerMessages, DeliverPolicy } from "@nats-io/jetstream";
import type { KvEntry } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator, Status, Subscription } from "@nats-io/transport-node";
import { Admission } from "./admission.js";
import { payloadDigest } from "./digest.js";
import { AdmissionError, ProtocolMessageError, type RejectReason } from "./errors.js";
import { equalBytes, keyPairFromPrivate, sha256, toHex } from "./identity.js";
import {
  type MessageSource,
  PayloadPool,
  type ReceivedUpdate,
  RoundInbox,
  workerKey,
} from "./inbox.js";
import {
  type FederationResources,
  isWrongLastSequence,
  openFederation,
  publishDurable,
  readStream,
  sleep,
  UPDATE_SHARDS,
} from "./resources.js";
import type {
  BoundedUpdateCount,
  CheckpointRef,
  Commit,
  CommitEntry,
  CommittedUpdate,
  ModelDisagreement,
  ProtocolCounters,
  ProtocolSettings,
  ProtocolSpec,
  ReplicaModel,
  RoundResult,
  WorkerHeartbeat,
  WorkerRef,
} from "./types.js";
import {
  CHUNK_HEADER_BYTES,
  decodeCheckpoint,
  decodeCommit,
  decodeControl,
  decodeHeartbeat,
  decodeMember,
  encodeCheckpoint,
  encodeChunkHeader,
  encodeCommit,
  encodeHeartbeat,
  encodeLease,
  encodeManifest,
  encodeMember,
  encodeRoundStatus,
  encodeStored,
  isValidId,
} from "./wire.js";

/** The protocol's defaults; see docs/protocol.md, "Timeouts and limits". */
export const defaultSettings: ProtocolSettings = {
  heartbeatIntervalMs: 2_000,
  workerTtlMs: 10_000,
  leaseTtlMs: 6_000,
  // 0: the server's max_payload less room for headers, at most 1 MiB (measured: larger chunks
  // made JetStream file-store publishes slower, smaller ones add per-message overhead).
  chunkBytes: 0,
  maxUpdateBytes: 256 * 1024 * 1024,
  maxRoundBytes: 2 * 1024 * 1024 * 1024,
  publishRetryMs: 60_000,
};

/** Options of {@link FederationWorker.start}. */
export interface WorkerOptions {
  /**
   * This worker's own connection. Workers sharing one connection that does not echo (as
   * connectNats makes them) do not see each other's updates live, and read them from the streams.
   */
  nc: NatsConnection;
  spec: ProtocolSpec;
  /** SHA-256 of this member's canonical FederationSpec (status.federationSpecHash). */
  specHash: Uint8Array;
  memberId: string;
  workerId: string;
  /** The member's raw 32-byte Ed25519 private key. */
  privateKey: Uint8Array;
  model: ReplicaModel;
  settings?: Partial<ProtocolSettings>;
  /** Receives one line per notable event (coordinator changes, retries, mismatches). */
  log?: (line: string) => void;
  /**
   * The caller's counts of updates its norm bound clipped or dropped, per member, reported in
   * every heartbeat (the protocol does not aggregate, so it cannot count them itself).
   */
  boundedUpdates?: () => BoundedUpdateCount[];
}

const zeroHash = new Uint8Array(32);
const maxChunkBytes = 1024 * 1024;
// Room in a message for the chunk header and the JetStream publish headers (message id).
const chunkHeadroom = 4096;
const leaseKey = "coordinator";
/** How many of the latest commits' worker lists a worker keeps (a trainer asks for recent ones). */
const ROSTER_ROUNDS = 64;

function emptyCounters(): ProtocolCounters {
  return {
    dropped: {
      malformed: 0,
      truncated: 0,
      oversized: 0,
      "unsupported-version": 0,
      "bad-signature": 0,
      "unknown-key": 0,
      "spec-mismatch": 0,
      replayed: 0,
      late: 0,
      "digest-mismatch": 0,
      paused: 0,
    },
    updatesSent: 0,
    bytesSent: 0,
    updatesReceived: 0,
    roundsApplied: 0,
    commitsPublished: 0,
    roundsRetried: 0,
    coordinatorTerms: 0,
    modelHashMismatches: 0,
  };
}

interface LiveWorker {
  heartbeat: WorkerHeartbeat;
  receivedAt: number;
}

interface Stoppable {
  stop(): void | Promise<void>;
}

/** One round's inbox, and its consumers on the update streams once it reads them. */
interface RoundReceiver {
  inbox: RoundInbox;
  fromStore: Stoppable[] | undefined;
}

/** One worker of this member in the federation. */
export class FederationWorker {
  readonly memberId: string;
  readonly workerId: string;
  private readonly settings: ProtocolSettings;
  private readonly publicKey: Uint8Array;
  private readonly admission: Admission;
  private readonly counters = emptyCounters();
  private readonly log: (line: string) => void;
  private resources!: FederationResources;

  // Ledger as followed: the last valid commit, and the last stream sequence seen.
  private lastRound = 0;
  private lastHash: Uint8Array = zeroHash;
  private ledgerSeq = 0;
  // The ledger's last sequence when this worker started following it: commits up to it are history.
  private historySeq = 0;
  // Members whose current key has signed or contributed to a commit this worker accepted.
  private readonly currentKeyInLedger = new Set<string>();
  private lastCheckpointReferenced = 0;
  // The commit that vouches for a restored checkpoint whose signer is no current member.
  private checkpointVoucher: { round: number; digest: Uint8Array; accepted: boolean } | undefined;
  private readonly commits = new Map<number, Commit>();
  // The workers each of the last ROSTER_ROUNDS accepted commits included, for committedWorkers().
  private readonly rosters = new Map<number, WorkerRef[]>();

  private appliedRound = 0;
  private modelHash: Uint8Array = zeroHash;
  private readonly appliedHashes = new Map<number, string>();
  private roundsContributed = 0;
  private loss: number | undefined;
  private readonly inboxes = new Map<number, RoundReceiver>();
  private readonly payloads: PayloadPool;
  private chunkSlots: Uint8Array[] | undefined;
  private heartbeatWrite: Promise<void> = Promise.resolve();
  /**
   * Rounds from this one on are received live (core NATS) from their start; earlier rounds may
   * have been published before the live subscription was (re)established, so they are read from
   * the update streams. Infinity until the worker has joined.
   */
  private liveFrom = Number.POSITIVE_INFINITY;
  private readonly roundWaiters = new Map<number, Array<() => void>>();
  private readonly submitted = new Set<number>();
  private applying = false;
  private pumpAgain = false;

  private readonly live = new Map<string, LiveWorker>();
  private readonly disagreements: ModelDisagreement[] = [];
  private readonly reportedMismatch = new Set<string>();

  private paused = false;
  private controlSequence = 0;

  private leaseRevision: number | undefined;
  private coordinatorRound: number | undefined;
  private coordinatorAttempt = 0;
  private coordinatorDeadline = 0;
  private committing: { round: number; since: number } | undefined;
  private statusWritten = "";
  private coordinating = false;
  private coordinateAgain = false;
  private behindSince: number | undefined;

  private stopping = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly loops: Stoppable[] = [];
  private failure: Error | undefined;

  private constructor(private readonly options: WorkerOptions) {
    if (!isValidId(options.memberId) || !isValidId(options.workerId))
      throw new AdmissionError(
        `member id "${options.memberId}" and worker id "${options.workerId}" must be DNS labels`,
      );
    this.memberId = options.memberId;
    this.workerId = options.workerId;
    this.settings = { ...defaultSettings, ...options.settings };
    this.publicKey = keyPairFromPrivate(options.privateKey).publicKey;
    this.admission = new Admission(options.spec, options.specHash);
    this.payloads = new PayloadPool(this.settings.maxRoundBytes);
    this.log = options.log ?? (() => {});
  }

  /**
   * Joins the federation: registers the member if needed, loads the latest checkpoint, replays
   * the commits after it, and starts heartbeating and campaigning for the coordinator lease.
   * Throws {@link AdmissionError} when this member may not take part.
   */
  static async start(options: WorkerOptions): Promise<FederationWorker> {
    const worker = new FederationWorker(options);
    try {
      await worker.join();
    } catch (error) {
      await worker.stop({ graceful: false });
      throw error;
    }
    return worker;
  }

  private get deadlineMs(): number {
    return this.options.spec.sync.roundDeadlineSeconds * 1000;
  }

  private async join(): Promise<void> {
    const { spec } = this.options;
    if (!this.admission.allows(this.memberId, this.publicKey))
      throw new AdmissionError(
        `member ${this.memberId} is not in federation ${spec.id}'s allowlist with this key: ask the organiser to add its public key`,
      );
    this.resources = await openFederation(this.options.nc, spec.id, this.settings);
    await this.registerMember();
    await this.followMembers();
    await this.followWorkers();
    await this.followControl();
    await this.restoreCheckpoint();
    this.followUpdatesLive();
    await this.followLedger();
    // Rounds up to the next open one may have started before the live subscription.
    this.liveFrom = this.lastRound + 2;
    this.checkCheckpointVoucher();
    await this.caughtUp();
    await this.heartbeat();
    this.every(this.settings.heartbeatIntervalMs, () => this.heartbeat());
    this.every(Math.max(50, Math.floor(this.settings.leaseTtlMs / 3)), () => this.campaign());
    this.every(Math.min(250, Math.max(20, Math.floor(this.deadlineMs / 20))), () =>
      this.coordinateOnce(),
    );
    await this.campaign();
  }

  private every(ms: number, task: () => Promise<void>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running || this.stopping) return;
      running = true;
      task()
        .catch((error) => this.log(`[${this.workerId}] ${String(error)}`))
        .finally(() => {
          running = false;
        });
    }, ms);
    this.timers.push(timer);
  }

  private async registerMember(): Promise<void> {
    await registerMemberRecord(this.resources, {
      memberId: this.memberId,
      specHash: this.options.specHash,
      privateKey: this.options.privateKey,
    });
  }

  // --- following NATS ------------------------------------------------------------------------

  /**
   * Follows a stream (optionally one subject filter) from its start, calling onMessage in order.
   * Creating the consumer fails while the server restarts, and a consumer can end on errors: it
   * is then recreated after the last sequence seen, so no message is handled twice.
   */
  private follow(
    stream: string,
    filter: string | undefined,
    maxBytes: number,
    onMessage: (seq: number, subject: string, data: Uint8Array) => void | Promise<void>,
  ): { stop: () => void } {
    let stopped = false;
    let current: ConsumerMessages | undefined;
    let lastSeq = 0;
    const { js } = this.resources;
    (async () => {
      while (!stopped && !this.stopping) {
        try {
          const consumer = await js.consumers.get(stream, {
            ...(filter ? { filter_subjects: filter } : {}),
            ...(lastSeq === 0
              ? { deliver_policy: DeliverPolicy.All }
              : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }),
          });
          const messages = await consumer.consume({ max_bytes: maxBytes });
          current = messages;
          if (stopped) await messages.close();
          for await (const m of messages) {
            if (m.seq <= lastSeq) continue;
            lastSeq = m.seq;
            await onMessage(m.seq, m.subject, m.data);
          }
        } catch (error) {
          if (!stopped && !this.stopping)
            this.log(`[${this.workerId}] ${stream}: ${String(error)}`);
        }
        if (!stopped && !this.stopping) await sleep(200);
      }
    })();
    return {
      stop: () => {
        stopped = true;
        current?.close().catch(() => {});
      },
    };
  }

  private async followMembers(): Promise<void> {
    const watch = await this.resources.members.watch();
    let ready: () => void = () => {};
    const initial = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const pending = (await this.resources.members.status()).values;
    if (pending === 0) ready();
    let seen = 0;
    this.loops.push({ stop: () => watch.stop() });
    (async () => {
      for await (const entry of watch) {
        this.onMemberEntry(entry);
        if (++seen >= pending) ready();
      }
    })().catch((error) => this.log(`member watch ended: ${String(error)}`));
    await Promise.race([initial, sleep(5_000)]);
  }

  private onMemberEntry(entry: KvEntry): void {
    if (entry.operation !== "PUT") {
      // A deregistered member's key is forgotten: the member may rejoin with a new key.
      this.admission.forget(entry.key);
      this.currentKeyInLedger.delete(entry.key);
      return;
    }
    try {
      const { body, signer } = decodeMember(entry.value);
      if (body.memberId !== entry.key)
        throw new ProtocolMessageError("malformed", "member record under another key");
      if (!this.admission.observe(body, signer))
        throw new ProtocolMessageError("unknown-key", `member ${body.memberId}: key not admitted`);
    } catch (error) {
      this.drop(error);
    }
  }

  /** A member registered after our watch delivered: look it up directly once. */
  private async refreshMember(memberId: string): Promise<void> {
    if (!isValidId(memberId)) return;
    const entry = await this.resources.members.get(memberId).catch(() => null);
    if (entry) this.onMemberEntry(entry);
  }

  private async followWorkers(): Promise<void> {
    const watch = await this.resources.workers.watch();
    this.loops.push({ stop: () => watch.stop() });
    (async () => {
      for await (const entry of watch) this.onWorkerEntry(entry);
    })().catch((error) => this.log(`worker watch ended: ${String(error)}`));
  }

  private onWorkerEntry(entry: KvEntry): void {
    if (entry.operation !== "PUT") {
      this.live.delete(entry.key);
      return;
    }
    try {
      const { body, signer } = decodeHeartbeat(entry.value);
      const key = workerKey(body.memberId, body.workerId);
      if (key !== entry.key)
        throw new ProtocolMessageError("malformed", "heartbeat under another key");
      if (!this.admission.allows(body.memberId, signer))
        throw new ProtocolMessageError("unknown-key", `heartbeat of ${key}: key not admitted`);
      const known = this.admission.members.get(body.memberId);
      if (known && !equalBytes(known.publicKey, signer))
        throw new ProtocolMessageError("unknown-key", `heartbeat of ${key}: not the member key`);
      this.live.set(key, { heartbeat: body, receivedAt: Date.now() });
      this.checkAgreement(body);
    } catch (error) {
      this.drop(error);
    }
  }

  private checkAgreement(hb: WorkerHeartbeat): void {
    if (hb.memberId === this.memberId && hb.workerId === this.workerId) return;
    if (!equalBytes(hb.specHash, this.options.specHash) || hb.appliedRound === 0) return;
    const mine = this.appliedHashes.get(hb.appliedRound);
    if (!mine) return;
    const theirs = toHex(hb.modelHash);
    const id = `${hb.memberId}.${hb.workerId}.${hb.appliedRound}`;
    if (theirs === mine || this.reportedMismatch.has(id)) return;
    this.reportedMismatch.add(id);
    this.counters.modelHashMismatches++;
    this.disagreements.push({
      round: hb.appliedRound,
      worker: { memberId: hb.memberId, workerId: hb.workerId },
      expected: mine,
      reported: theirs,
    });
    if (this.disagreements.length > 100) this.disagreements.shift();
    this.log(`[${this.workerId}] model of ${id} differs: ${theirs} != ${mine}`);
  }

  private async followControl(): Promise<void> {
    const follower = this.follow(
      this.resources.names.controlStream,
      undefined,
      1 << 20,
      (_, __, data) => this.onControl(data),
    );
    this.loops.push(follower);
  }

  private onControl(data: Uint8Array): void {
    try {
      const { body, signer } = decodeControl(data);
      if (!this.admission.isOrganiser(signer))
        throw new ProtocolMessageError("unknown-key", "control message not from an organiser");
      if (body.sequence <= this.controlSequence)
        throw new ProtocolMessageError("replayed", `control sequence ${body.sequence} replayed`);
      this.controlSequence = body.sequence;
      this.paused = body.action === "pause";
      this.log(`[${this.workerId}] federation ${body.action}d: ${body.reason}`);
    } catch (error) {
      this.drop(error);
    }
  }

  private async restoreCheckpoint(): Promise<void> {
    const entry = await this.resources.state.get("checkpoint");
    if (entry?.operation !== "PUT") {
      this.modelHash = await this.options.model.hash();
      return;
    }
    const { body: ref, signer } = decodeCheckpoint(entry.value);
    if (![...this.admission.members.values()].some((m) => equalBytes(m.publicKey, signer))) {
      // Its signer holds no member's key now (it left, or rejoined with a new key). A commit that
      // references it vouches for it, once the ledger accepts that commit (checked after reading
      // it); without one, start from the initial model and replay the whole ledger instead.
      const round = await this.commitReferencing(ref);
      if (round === undefined) {
        this.log(
          `[${this.workerId}] the checkpoint of round ${ref.round} is signed by no current member and no commit references it: replaying the ledger from round 1`,
        );
        this.modelHash = await this.options.model.hash();
        return;
      }
      this.checkpointVoucher = { round, digest: ref.digest, accepted: false };
    }
    const bytes = await this.resources.checkpoints.getBlob(ref.objectName);
    if (!bytes || bytes.length !== ref.size || !equalBytes(sha256(bytes), ref.digest))
      throw new AdmissionError(`checkpoint ${ref.objectName} is missing or fails its digest`);
    await this.options.model.restore(bytes);
    this.appliedRound = ref.round;
    this.modelHash = await this.options.model.hash();
    this.appliedHashes.set(ref.round, toHex(this.modelHash));
    this.log(`[${this.workerId}] restored checkpoint of round ${ref.round}`);
  }

  /** The round of a commit in the ledger that references this checkpoint, if any. */
  private async commitReferencing(ref: CheckpointRef): Promise<number | undefined> {
    const { ledgerStream } = this.resources.names;
    for (const { data } of await readStream(this.resources, ledgerStream)) {
      try {
        const { body } = decodeCommit(data);
        if (body.checkpoint && equalBytes(body.checkpoint.digest, ref.digest)) return body.round;
      } catch {
        // An invalid commit vouches for nothing.
      }
    }
    return undefined;
  }

  private checkCheckpointVoucher(): void {
    const voucher = this.checkpointVoucher;
    this.checkpointVoucher = undefined;
    if (voucher && !voucher.accepted)
      throw new AdmissionError(
        `the restored checkpoint is signed by no current member, and the commit of round ${voucher.round} that references it is not part of the valid ledger`,
      );
  }

  private async followLedger(): Promise<void> {
    const { jsm, names } = this.resources;
    const last = (await jsm.streams.info(names.ledgerStream)).state.last_seq;
    this.historySeq = last;
    let caughtUp: () => void = () => {};
    const initial = new Promise<void>((resolve) => {
      caughtUp = resolve;
    });
    if (last === 0) caughtUp();
    const follower = this.follow(names.ledgerStream, undefined, 4 << 20, (seq, _, data) => {
      this.onCommit(seq, data);
      if (seq >= last) caughtUp();
    });
    this.loops.push(follower);
    await initial;
    if (this.lastRound === 0 && this.counters.dropped["spec-mismatch"] > 0)
      throw new AdmissionError(
        `federation ${this.options.spec.id} commits rounds under another federation spec hash: apply the same spec.federation as the other members`,
      );
    this.pump();
  }

  private onCommit(seq: number, data: Uint8Array): void {
    this.ledgerSeq = Math.max(this.ledgerSeq, seq);
    try {
      const { body: commit, signer } = decodeCommit(data);
      if (commit.round <= this.lastRound)
        throw new ProtocolMessageError("replayed", `commit of round ${commit.round} again`);
      if (commit.round !== this.lastRound + 1)
        throw new ProtocolMessageError("malformed", `commit of round ${commit.round} skips rounds`);
      if (!equalBytes(commit.prevHash, this.lastHash))
        throw new ProtocolMessageError("malformed", `commit ${commit.round} breaks the chain`);
      const who = commit.coordinator.memberId;
      const admitted = this.admission.allows(who, signer);
      const known = this.admission.members.get(who);
      if (
        !admitted ||
        (known && !equalBytes(known.publicKey, signer) && !this.earlierKey(who, seq))
      )
        throw new ProtocolMessageError("unknown-key", `commit ${commit.round}: unknown signer`);
      if (!equalBytes(commit.specHash, this.options.specHash))
        throw new ProtocolMessageError("spec-mismatch", `commit ${commit.round}: other spec`);
      if (!isCanonical(commit.entries))
        throw new ProtocolMessageError("malformed", `commit ${commit.round}: entries unsorted`);
      for (const [memberId, key] of [
        [who, signer] as const,
        ...commit.entries.map((e) => [e.memberId, e.publicKey] as const),
      ])
        if (equalBytes(this.admission.members.get(memberId)?.publicKey ?? new Uint8Array(), key))
          this.currentKeyInLedger.add(memberId);
      this.lastRound = commit.round;
      this.lastHash = sha256(data);
      if (commit.checkpoint) this.lastCheckpointReferenced = commit.checkpoint.round;
      const voucher = this.checkpointVoucher;
      if (voucher && voucher.round === commit.round)
        voucher.accepted = equalBytes(
          commit.checkpoint?.digest ?? new Uint8Array(),
          voucher.digest,
        );
      if (commit.round > this.appliedRound) this.commits.set(commit.round, commit);
      this.rosters.set(
        commit.round,
        commit.entries.map(({ memberId, workerId }) => ({ memberId, workerId })),
      );
      this.rosters.delete(commit.round - ROSTER_ROUNDS);
      this.pump();
    } catch (error) {
      this.drop(error);
    }
  }

  /**
   * Whether an update of round may be taken: its member is admitted with this key, or an accepted
   * commit of that round names exactly this member and key (an update the federation agreed on,
   * e.g. of a member that has since rejoined with a new key; apply still checks its digest).
   */
  private admitUpdate(round: number, memberId: string, key: Uint8Array): RejectReason | undefined {
    const refused = this.admission.check(memberId, key);
    if (refused !== "unknown-key") return refused;
    const named = this.commits
      .get(round)
      ?.entries.some((e) => e.memberId === memberId && equalBytes(e.publicKey, key));
    return named ? undefined : refused;
  }

  /**
   * Whether a historical commit may carry another key than its coordinator's registered one: a
   * member that left (deregistered) and rejoined with a new key signed its earlier rounds with
   * its earlier key. Only history read at start, and only before the registered key appears in
   * the ledger; the workers live at the time checked those commits, and later ones hash them.
   */
  private earlierKey(memberId: string, seq: number): boolean {
    return seq <= this.historySeq && !this.currentKeyInLedger.has(memberId);
  }

  // --- updates -------------------------------------------------------------------------------

  private inboxFor(round: number): RoundInbox {
    const existing = this.inboxes.get(round);
    if (existing) return existing.inbox;
    const inbox = new RoundInbox({
      round,
      maxUpdateBytes: this.settings.maxUpdateBytes,
      maxRoundBytes: this.settings.maxRoundBytes,
      admit: (memberId, key) => this.admitUpdate(round, memberId, key),
      reject: (reason, detail) => this.count(reason, detail),
      ...(this.options.model.validate
        ? { validate: (payload: Uint8Array) => this.options.model.validate?.(payload) }
        : {}),
      onGap: () => this.readFromStore(round),
      allocate: (size) => this.payloads.take(size),
    });
    // A newly complete or newly stored update may close the round.
    inbox.onComplete(() =>
      this.coordinateOnce().catch((error) => this.log(`[${this.workerId}] ${String(error)}`)),
    );
    this.inboxes.set(round, { inbox, fromStore: undefined });
    if (round < this.liveFrom) this.readFromStore(round);
    return inbox;
  }

  /**
   * Takes every update message as it is published: core NATS delivers it to this subscription
   * while JetStream stores it, so the live path costs no store read. Only the next two rounds are
   * taken (a worker one round behind still collects the next); anything the live path misses is
   * read from the update streams (see readFromStore).
   */
  private followUpdatesLive(): void {
    const subject = `fedtrain.${this.options.spec.id}.update.*.*.*.*`;
    const sub: Subscription = this.options.nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return;
        const round = Number(msg.subject.split(".")[4]);
        if (!(round > this.appliedRound && round <= this.appliedRound + 2)) return;
        this.receive(this.inboxFor(round), msg.subject, msg.data, "live").catch((e) =>
          this.log(`[${this.workerId}] ${String(e)}`),
        );
      },
    });
    this.loops.push({ stop: () => sub.unsubscribe() });
    // A disconnect loses live messages: every open round is then read from the streams too.
    // The client's status iterator is a QueuedIterator: stop() detaches it from the connection,
    // which outlives this worker.
    const status = this.options.nc.status() as AsyncIterable<Status> &
      Partial<Pick<QueuedIterator<Status>, "stop">>;
    this.loops.push({ stop: () => status.stop?.() });
    (async () => {
      for await (const event of status) {
        if (event.type !== "reconnect" && event.type !== "slowConsumer") continue;
        this.liveFrom = Math.max(this.lastRound, this.appliedRound) + 2;
        for (const round of this.inboxes.keys()) this.readFromStore(round);
      }
    })().catch((error) => this.log(`connection status ended: ${String(error)}`));
  }

  /**
   * Reads a round from its update streams (one consumer per shard, from the start of the round):
   * for rounds that began before this worker listened live, and when the live path lost a
   * message. Copies of what already came live are dropped quietly by the inbox.
   */
  private readFromStore(round: number): void {
    const receiver = this.inboxes.get(round);
    if (!receiver || receiver.fromStore || this.stopping) return;
    const { names } = this.resources;
    // Bounds what one pull may buffer; payload buffers are bounded by maxRoundBytes.
    const maxBytes = 16 * 1024 * 1024;
    receiver.fromStore = names.updatesStreams.map((stream, shard) =>
      this.follow(stream, names.roundUpdates(shard, round), maxBytes, (_, subject, data) =>
        this.receive(receiver.inbox, subject, data, "stored"),
      ),
    );
  }

  private async receive(
    inbox: RoundInbox,
    subject: string,
    data: Uint8Array,
    source: MessageSource,
  ): Promise<void> {
    const tokens = subject.split(".");
    const memberId = tokens[tokens.length - 2] ?? "";
    const before = inbox.complete.size;
    if (memberId === this.memberId && subject.endsWith(`.${this.workerId}`) && inbox.isLocal)
      return;
    if (!this.admission.members.has(memberId) && isManifest(data))
      await this.refreshMember(memberId);
    inbox.handle(subject, data, source);
    if (inbox.complete.size > before) this.onUpdateComplete(inbox);
  }

  private stopReceiving(round: number): void {
    for (const follower of this.inboxes.get(round)?.fromStore ?? []) follower.stop();
    this.inboxes.delete(round);
  }

  private onUpdateComplete(inbox: RoundInbox): void {
    this.counters.updatesReceived++;
    const commit = this.commits.get(inbox.round);
    if (commit) {
      const latest = [...inbox.complete.values()].at(-1);
      if (latest && !inCommit(commit, latest)) this.count("late", `update after round's commit`);
    }
    this.pump();
  }

  /**
   * Sends this worker's update for the next round and returns once that round is committed and
   * applied. `loss` is reported in heartbeats for the federation view.
   */
  async contribute(payload: Uint8Array, options: { loss?: number } = {}): Promise<RoundResult> {
    const round = await this.submit(payload, options);
    return this.waitForRound(round);
  }

  /**
   * Sends this worker's update for the next round; returns that round. With `round`, refuses
   * (ProtocolMessageError "late") when that round is already committed, and throws RangeError
   * when it is not the next round.
   */
  async submit(
    payload: Uint8Array,
    options: { loss?: number; round?: number } = {},
  ): Promise<number> {
    this.assertRunning();
    if (options.loss !== undefined) this.loss = options.loss;
    await this.caughtUp();
    const round = this.appliedRound + 1;
    const wanted = options.round ?? round;
    // An update for a committed round could only be dropped as late by everyone.
    if (wanted <= this.lastRound)
      throw new ProtocolMessageError("late", `round ${wanted} is already committed`);
    if (wanted !== round)
      throw new RangeError(`round ${wanted} is not open yet: the next round is ${round}`);
    if (this.submitted.has(round))
      throw new ProtocolMessageError("replayed", `already sent an update for round ${round}`);
    if (payload.length > this.settings.maxUpdateBytes)
      throw new ProtocolMessageError("oversized", `update of ${payload.length} bytes`);
    // Every receiver would refuse it: say so to the caller instead.
    this.options.model.validate?.(payload);
    this.submitted.add(round);
    await this.publishUpdate(round, payload);
    return round;
  }

  private async publishUpdate(round: number, payload: Uint8Array): Promise<void> {
    const { js, names } = this.resources;
    const chunkSize = this.chunkBytes();
    const chunkCount = Math.ceil(payload.length / chunkSize);
    const body = {
      round,
      memberId: this.memberId,
      workerId: this.workerId,
      size: payload.length,
      digest: payloadDigest(payload),
      chunkSize,
      chunkCount,
    };
    const manifest = encodeManifest(body, this.options.privateKey);
    // Our own update needs no download: the inbox takes it now and skips its echo.
    const inbox = this.inboxFor(round);
    if (inbox.addLocal(body, this.publicKey, payload)) this.onUpdateComplete(inbox);
    const id = `${round}.${this.memberId}.${this.workerId}`;
    const retry = this.settings.publishRetryMs;
    const subject = (shard: number) =>
      names.updateSubject(shard, round, this.memberId, this.workerId);
    // The manifest goes to every shard first, so each shard's consumer sees it before the
    // chunks that follow it in that stream.
    await Promise.all(
      names.updatesStreams.map((_, shard) =>
        publishDurable(js, subject(shard), manifest, { msgID: `${id}.m${shard}` }, retry),
      ),
    );
    // A window of publishes in flight keeps the pipe full without unbounded buffering. Each
    // slot's message buffer is reused once its publish (and any retry of it) has resolved, and
    // the slots serve the next round's publish too (unless two publishes overlap).
    const window = 8;
    const slots = this.takeChunkSlots(
      Math.min(window, chunkCount),
      CHUNK_HEADER_BYTES + Math.min(chunkSize, payload.length),
    );
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < chunkCount; i++) {
      const data = payload.subarray(i * chunkSize, Math.min(payload.length, (i + 1) * chunkSize));
      const message = slots[i % window]!.subarray(0, CHUNK_HEADER_BYTES + data.length);
      message.set(encodeChunkHeader(i));
      message.set(data, CHUNK_HEADER_BYTES);
      const shard = i % UPDATE_SHARDS;
      inFlight.push(publishDurable(js, subject(shard), message, { msgID: `${id}.${i}` }, retry));
      if (inFlight.length >= window) await inFlight.shift();
    }
    await Promise.all(inFlight);
    this.chunkSlots = slots;
    // Every chunk is acknowledged, so stored: only now may a commit name this update.
    await publishDurable(
      js,
      subject(0),
      encodeStored(
        { round, memberId: this.memberId, workerId: this.workerId, digest: body.digest },
        this.options.privateKey,
      ),
      { msgID: `${id}.s` },
      retry,
    );
    inbox.markStored(this.memberId, this.workerId);
    this.counters.updatesSent++;
    this.counters.bytesSent += payload.length;
  }

  /** Chunk message buffers: the previous publish's, when they fit and no publish holds them. */
  private takeChunkSlots(count: number, bytes: number): Uint8Array[] {
    const slots = this.chunkSlots;
    this.chunkSlots = undefined;
    if (slots && slots.length >= count && slots[0]!.length >= bytes) return slots;
    return Array.from({ length: count }, () => new Uint8Array(bytes));
  }

  /** The configured chunk size, or one that fits the connected server's max_payload. */
  private chunkBytes(): number {
    if (this.settings.chunkBytes > 0) return this.settings.chunkBytes;
    const maxPayload = this.options.nc.info?.max_payload ?? 1024 * 1024;
    return Math.min(maxChunkBytes, maxPayload - chunkHeadroom);
  }

  private async caughtUp(): Promise<void> {
    while (this.appliedRound < this.lastRound) await this.waitForRoundApplied(this.lastRound);
  }

  private waitForRoundApplied(round: number): Promise<void> {
    if (this.appliedRound >= round) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.roundWaiters.get(round) ?? [];
      list.push(() => (this.failure ? reject(this.failure) : resolve()));
      this.roundWaiters.set(round, list);
    });
  }

  /** Waits until round is committed and applied here. */
  async waitForRound(round: number): Promise<RoundResult> {
    await this.waitForRoundApplied(round);
    const commit = this.commits.get(round);
    if (!commit) throw new ProtocolMessageError("late", `round ${round} was applied elsewhere`);
    return {
      round,
      included: commit.entries.some(
        (e) => e.memberId === this.memberId && e.workerId === this.workerId,
      ),
      commit,
      modelHash: this.appliedHashes.get(round) ?? toHex(this.modelHash),
    };
  }

  // --- apply ---------------------------------------------------------------------------------

  /** Applies every commit that is ready, in round order; one pass at a time. */
  private pump(): void {
    if (this.stopping) return;
    if (this.applying) {
      // Something arrived while a pass runs: run another pass after it, or the wake-up is lost.
      this.pumpAgain = true;
      return;
    }
    this.applying = true;
    this.pumpAgain = false;
    this.applyReady()
      .catch((error) => {
        this.failure = error instanceof Error ? error : new Error(String(error));
        this.log(`[${this.workerId}] apply failed: ${String(error)}`);
        for (const list of this.roundWaiters.values()) for (const w of list) w();
        this.roundWaiters.clear();
      })
      .finally(() => {
        this.applying = false;
        if (this.pumpAgain && !this.failure) this.pump();
      });
  }

  private async applyReady(): Promise<void> {
    for (;;) {
      if (this.stopping) return;
      const round = this.appliedRound + 1;
      this.inboxFor(round);
      const commit = this.commits.get(round);
      if (!commit) return;
      const inbox = this.inboxFor(round);
      const updates: CommittedUpdate[] = [];
      for (const entry of commit.entries) {
        const update = inbox.find(entry.memberId, entry.workerId, entry.digest);
        if (!update) {
          // The commit names it, so it is stored: read the round from the streams unless the
          // live path delivers it first. The next completed update pumps again.
          this.readFromStore(round);
          return;
        }
        // Counted when it completed; every replica refuses the same bytes, so all leave it out.
        if (inbox.isUnusable(entry.memberId, entry.workerId)) continue;
        updates.push({ ...entry, payload: update.payload });
      }
      await this.options.model.apply(commit, updates);
      this.modelHash = await this.options.model.hash();
      this.appliedRound = round;
      this.appliedHashes.set(round, toHex(this.modelHash));
      this.appliedHashes.delete(round - 64);
      this.counters.roundsApplied++;
      if (commit.entries.some((e) => e.memberId === this.memberId && e.workerId === this.workerId))
        this.roundsContributed++;
      // Nothing reads this round's payloads any more (apply has returned): the next rounds'
      // downloads reuse their buffers.
      const downloaded = inbox.downloadedPayloads();
      this.stopReceiving(round);
      this.payloads.recycle(downloaded);
      this.commits.delete(round - 64);
      if (this.leaseRevision !== undefined)
        await this.checkpointIfDue(round).catch((error) =>
          this.log(`[${this.workerId}] checkpoint of round ${round} failed: ${String(error)}`),
        );
      const waiters = this.roundWaiters.get(round) ?? [];
      this.roundWaiters.delete(round);
      for (const w of waiters) w();
      for (const hb of this.live.values()) this.checkAgreement(hb.heartbeat);
      await this.heartbeat().catch(() => {});
      this.coordinateOnce().catch((error) => this.log(`[${this.workerId}] ${String(error)}`));
    }
  }

  private async checkpointIfDue(round: number): Promise<void> {
    const every = this.options.spec.sync.checkpointEveryRounds;
    if (every <= 0 || round % every !== 0) return;
    const snapshot = await this.options.model.snapshot();
    const ref: CheckpointRef = {
      round,
      digest: sha256(snapshot),
      size: snapshot.length,
      objectName: `round-${round}`,
    };
    const { checkpoints, state } = this.resources;
    await checkpoints.putBlob({ name: ref.objectName }, snapshot);
    await state.put("checkpoint", encodeCheckpoint(ref, this.options.privateKey));
    this.log(`[${this.workerId}] checkpoint of round ${round} (${snapshot.length} bytes)`);
  }

  // --- heartbeat and lease -------------------------------------------------------------------

  /**
   * Writes this worker's record. Writes run one after the other, and once the worker is stopping
   * only the leaving record is written: an active heartbeat still in flight (from the timer or
   * after an apply) would otherwise land after stop() deleted the record and bring it back.
   */
  private heartbeat(state: "active" | "leaving" = "active"): Promise<void> {
    const write = this.heartbeatWrite
      .catch(() => {})
      .then(async () => {
        if (this.stopping && state === "active") return;
        const record = encodeHeartbeat(
          {
            memberId: this.memberId,
            workerId: this.workerId,
            specHash: this.options.specHash,
            state,
            appliedRound: this.appliedRound,
            modelHash: this.modelHash,
            loss: this.loss,
            roundsContributed: this.roundsContributed,
            sentAtMs: Date.now(),
            boundedUpdates: this.options.boundedUpdates?.() ?? [],
          },
          this.options.privateKey,
        );
        await this.resources.workers.put(workerKey(this.memberId, this.workerId), record);
      });
    this.heartbeatWrite = write;
    return write;
  }

  private leaseValue(): Uint8Array {
    return encodeLease(
      { memberId: this.memberId, workerId: this.workerId, acquiredAtMs: Date.now() },
      this.options.privateKey,
    );
  }

  private async campaign(): Promise<void> {
    const { lease } = this.resources;
    if (this.leaseRevision !== undefined) {
      try {
        this.leaseRevision = await lease.update(leaseKey, this.leaseValue(), this.leaseRevision);
      } catch (error) {
        this.leaseRevision = undefined;
        this.log(`[${this.workerId}] lost the coordinator lease: ${String(error)}`);
      }
      return;
    }
    // A worker behind the ledger could not close the next round: it leaves the lease to others.
    if (this.appliedRound < this.lastRound) return;
    try {
      this.leaseRevision = await lease.create(leaseKey, this.leaseValue());
    } catch {
      return; // held by another worker
    }
    this.counters.coordinatorTerms++;
    this.coordinatorRound = undefined;
    this.committing = undefined;
    this.log(`[${this.workerId}] is the coordinator`);
  }

  private async resign(): Promise<void> {
    const revision = this.leaseRevision;
    this.leaseRevision = undefined;
    this.behindSince = undefined;
    this.log(`[${this.workerId}] hands the coordinator lease on: it is behind the ledger`);
    if (revision !== undefined)
      await this.resources.lease.delete(leaseKey, { previousSeq: revision }).catch(() => {});
  }

  /**
   * The workers whose updates the accepted commit of `round` included, in commit order; undefined
   * before that commit, or ROSTER_ROUNDS rounds after it. Every worker that follows the ledger
   * gets the same list (the trainer deals each round's data among them).
   */
  committedWorkers(round: number): WorkerRef[] | undefined {
    return this.rosters.get(round)?.map((worker) => ({ ...worker }));
  }

  /**
   * The workers live now: heartbeating within the worker TTL, active, admitted and under this
   * spec; this worker among them once its own heartbeat has come back through the bucket.
   */
  activeWorkers(): WorkerRef[] {
    return this.liveWorkers().map(({ memberId, workerId }) => ({ memberId, workerId }));
  }

  /** True while this worker holds the coordinator lease. */
  get isCoordinator(): boolean {
    return this.leaseRevision !== undefined;
  }

  // --- coordinator ---------------------------------------------------------------------------

  private liveWorkers(): WorkerHeartbeat[] {
    const cutoff = Date.now() - this.settings.workerTtlMs;
    const out: WorkerHeartbeat[] = [];
    for (const [key, { heartbeat, receivedAt }] of this.live) {
      // Entries the bucket TTL removed leave no delete marker: forget them here.
      if (receivedAt < cutoff - 10 * this.settings.workerTtlMs) this.live.delete(key);
      if (receivedAt < cutoff || heartbeat.state !== "active") continue;
      if (!equalBytes(heartbeat.specHash, this.options.specHash)) continue;
      const known = this.admission.members.get(heartbeat.memberId);
      if (!known || this.admission.check(heartbeat.memberId, known.publicKey)) continue;
      out.push(heartbeat);
    }
    return out;
  }

  /**
   * Runs one coordinator step, called on ticks and on new updates. A call while a step runs
   * makes that step run once more when it ends: the update that arrived during it may close the
   * round, which should not wait for the next tick.
   */
  private async coordinateOnce(): Promise<void> {
    if (this.leaseRevision === undefined || this.stopping) return;
    if (this.coordinating) {
      this.coordinateAgain = true;
      return;
    }
    this.coordinating = true;
    try {
      do {
        this.coordinateAgain = false;
        await this.coordinate();
      } while (this.coordinateAgain && this.leaseRevision !== undefined && !this.stopping);
    } finally {
      this.coordinating = false;
    }
  }

  private async coordinate(): Promise<void> {
    if (this.leaseRevision === undefined) return;
    // Close a round only once our own replica has applied the previous one (and written its
    // checkpoint), so commit r+1 references the checkpoint of round r when one is due.
    const now = Date.now();
    if (this.appliedRound < this.lastRound) {
      // A coordinator that cannot catch up (e.g. an update it cannot fetch) would stall every
      // round while holding the lease: after two deadlines it hands the lease on.
      this.behindSince ??= now;
      if (now - this.behindSince > 2 * this.deadlineMs) await this.resign();
      return;
    }
    this.behindSince = undefined;
    const round = this.lastRound + 1;
    if (this.committing && this.committing.round === round) {
      // Our commit is on its way back through the ledger; re-decide if it never shows up.
      if (now - this.committing.since < 5_000) return;
    }
    this.committing = undefined;
    if (this.coordinatorRound !== round) {
      this.coordinatorRound = round;
      this.coordinatorAttempt = 0;
      this.coordinatorDeadline = now + this.deadlineMs;
      await this.writeStatus(round, "open", "");
    }
    if (this.paused) {
      this.coordinatorDeadline = now + this.deadlineMs;
      await this.writeStatus(round, "paused", "paused by an organiser");
      return;
    }
    const inbox = this.inboxFor(round);
    const live = this.liveWorkers();
    const activeMembers = new Set(live.map((w) => w.memberId)).size;
    const committable = inbox.committable();
    const received = [...committable.values()];
    const contributing = new Set(received.map((u) => u.manifest.memberId)).size;
    const required = Admission.required(this.options.spec.sync.quorum, activeMembers);
    const met = contributing >= required;
    const allIn =
      live.length > 0 && live.every((w) => committable.has(workerKey(w.memberId, w.workerId)));
    // Halfway to the deadline without every update, a lost live message is the likelier cause
    // than a slow worker: read the round from the streams before the deadline decides.
    if (!allIn && now >= this.coordinatorDeadline - this.deadlineMs / 2) this.readFromStore(round);
    if (met && (allIn || now >= this.coordinatorDeadline)) {
      await this.commit(round, received, activeMembers, allIn ? "all-in" : "deadline");
      return;
    }
    if (now < this.coordinatorDeadline) return;
    this.coordinatorAttempt++;
    this.coordinatorDeadline = now + this.deadlineMs;
    this.counters.roundsRetried++;
    const reason = `quorum not met at the deadline: updates from ${contributing} of ${activeMembers} active members, ${required} required`;
    this.log(`[${this.workerId}] round ${round} retried: ${reason}`);
    await this.writeStatus(round, "retrying", reason);
  }

  private async writeStatus(round: number, phase: "open" | "retrying" | "paused", reason: string) {
    const id = `${round}/${this.coordinatorAttempt}/${phase}`;
    if (this.statusWritten === id) return;
    this.statusWritten = id;
    await this.resources.state.put(
      "round",
      encodeRoundStatus(
        {
          round,
          attempt: this.coordinatorAttempt,
          phase,
          reason,
          coordinator: { memberId: this.memberId, workerId: this.workerId },
          updatedAtMs: Date.now(),
        },
        this.options.privateKey,
      ),
    );
  }

  private async commit(
    round: number,
    received: ReceivedUpdate[],
    activeMembers: number,
    closedBy: Commit["closedBy"],
  ): Promise<void> {
    const entries: CommitEntry[] = received
      .map((u) => ({
        memberId: u.manifest.memberId,
        workerId: u.manifest.workerId,
        publicKey: u.signer,
        digest: u.manifest.digest,
        size: u.manifest.size,
      }))
      .sort(compareEntries);
    const checkpoint = await this.unreferencedCheckpoint();
    const commit: Commit = {
      round,
      attempt: this.coordinatorAttempt,
      prevHash: this.lastHash,
      specHash: this.options.specHash,
      coordinator: { memberId: this.memberId, workerId: this.workerId },
      closedBy,
      activeMembers,
      committedAtMs: Date.now(),
      entries,
      checkpoint,
    };
    const bytes = encodeCommit(commit, this.options.privateKey);
    this.committing = { round, since: Date.now() };
    try {
      // The expected last sequence makes the ledger linear even if two workers briefly both
      // believe they hold the lease: only one commit per position is stored.
      await publishDurable(
        this.resources.js,
        this.resources.names.ledgerSubject,
        bytes,
        { expect: { lastSequence: this.ledgerSeq }, msgID: `commit.${round}` },
        this.settings.publishRetryMs,
      );
      this.counters.commitsPublished++;
      this.log(`[${this.workerId}] committed round ${round}: ${entries.length} updates`);
    } catch (error) {
      this.committing = undefined;
      if (!isWrongLastSequence(error)) throw error;
    }
  }

  private async unreferencedCheckpoint(): Promise<CheckpointRef | undefined> {
    // Checkpoints are taken after rounds divisible by checkpointEveryRounds: none can be newer
    // than the last one referenced until such a round was committed since (saves a KV read).
    const every = this.options.spec.sync.checkpointEveryRounds;
    if (every <= 0 || Math.floor(this.lastRound / every) * every <= this.lastCheckpointReferenced)
      return undefined;
    const entry = await this.resources.state.get("checkpoint").catch(() => null);
    if (entry?.operation !== "PUT") return undefined;
    try {
      const { body, signer } = decodeCheckpoint(entry.value);
      const known = [...this.admission.members.values()].some((m) =>
        equalBytes(m.publicKey, signer),
      );
      if (!known || body.round <= this.lastCheckpointReferenced) return undefined;
      return body;
    } catch (error) {
      this.drop(error);
      return undefined;
    }
  }

  // --- state for callers ---------------------------------------------------------------------

  /** A copy of this worker's counters. */
  counterSnapshot(): ProtocolCounters {
    return structuredClone(this.counters);
  }

  /** Model disagreements this worker detected (the most recent 100). */
  modelDisagreements(): ModelDisagreement[] {
    return [...this.disagreements];
  }

  /** The last round applied here, and the model hash after it. */
  get applied(): { round: number; modelHash: string } {
    return { round: this.appliedRound, modelHash: toHex(this.modelHash) };
  }

  /** The last round committed in the ledger. */
  get committedRound(): number {
    return this.lastRound;
  }

  /** Whether an organiser paused the federation. */
  get isPaused(): boolean {
    return this.paused;
  }

  private assertRunning(): void {
    if (this.stopping) throw new AdmissionError(`worker ${this.workerId} is stopped`);
    if (this.failure) throw this.failure;
  }

  private drop(error: unknown): void {
    if (error instanceof ProtocolMessageError) this.count(error.reason, error.message);
    else this.count("malformed", String(error));
  }

  private count(reason: RejectReason, detail: string): void {
    this.counters.dropped[reason]++;
    this.log(`[${this.workerId}] dropped (${reason}): ${detail}`);
  }

  /**
   * Leaves the federation. graceful (default): hands back the coordinator lease and removes the
   * heartbeat, so the next round does not wait for this worker; false simulates a crash.
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const round of [...this.inboxes.keys()]) this.stopReceiving(round);
    await Promise.allSettled(this.loops.map((l) => l.stop()));
    if (options.graceful !== false && this.resources) {
      await this.heartbeat("leaving").catch(() => {});
      if (this.leaseRevision !== undefined)
        await this.resources.lease.delete(leaseKey).catch(() => {});
      await this.resources.workers.delete(workerKey(this.memberId, this.workerId)).catch(() => {});
    }
    this.failure ??= new AdmissionError(`worker ${this.workerId} stopped`);
    for (const list of this.roundWaiters.values()) for (const w of list) w();
    this.roundWaiters.clear();
  }
}

/** Registers (or updates) a member record; refuses a member id held by another key. */
export async function registerMemberRecord(
  resources: Pick<FederationResources, "members">,
  member: { memberId: string; specHash: Uint8Array; privateKey: Uint8Array },
): Promise<void> {
  const { publicKey } = keyPairFromPrivate(member.privateKey);
  const record = encodeMember(
    { memberId: member.memberId, specHash: member.specHash, registeredAtMs: Date.now() },
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
    if (current && equalBytes(current.body.specHash, member.specHash)) return;
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

function compareEntries(a: CommitEntry, b: CommitEntry): number {
  return compareStrings(a.memberId, b.memberId) || compareStrings(a.workerId, b.workerId);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when entries are strictly ordered by (memberId, workerId): the canonical apply order. */
export function isCanonical(entries: readonly CommitEntry[]): boolean {
  for (let i = 1; i < entries.length; i++)
    if (compareEntries(entries[i - 1]!, entries[i]!) >= 0) return false;
  return true;
}

function inCommit(commit: Commit, update: ReceivedUpdate): boolean {
  return commit.entries.some(
    (e) =>
      e.memberId === update.manifest.memberId &&
      e.workerId === update.manifest.workerId &&
      equalBytes(e.digest, update.manifest.digest),
  );
}

function isManifest(data: Uint8Array): boolean {
  return data.length > 4 && data[3] === 3;
}
