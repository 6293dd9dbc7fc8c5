// What every role of a federation worker shares: who it is, its settings, the federation's
// resources, the membership policy, the counters and the log. The facade creates one; each role
// holds it, and no role holds another role.
import type { NatsConnection } from "@nats-io/transport-node";
import { Admission } from "../admission.js";
import { AdmissionError, ProtocolMessageError, type RejectReason } from "../errors.js";
import { keyPairFromPrivate } from "../identity.js";
import type { FederationResources } from "../resources.js";
import { settingsWith } from "../settings.js";
import type {
  BoundedUpdateCount,
  MemberScoreReport,
  ProtocolCounters,
  ProtocolSettings,
  ProtocolSpec,
  ReplicaModel,
} from "../types.js";
import { isValidId } from "../wire.js";

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
  /** The caller's score of each member's updates, reported in every heartbeat (likewise). */
  memberScores?: () => MemberScoreReport[];
  /**
   * "peer" (the default): also campaigns for the coordinator lease and closes rounds while it
   * holds it. "contributor": never campaigns; it only sends updates and applies commits (a
   * member that cannot or will not coordinate, e.g. behind a link too slow to hold the lease).
   * A federation needs at least one peer.
   */
  role?: "peer" | "contributor";
  /**
   * Fault injection for tests: awaited where a real worker can be held up by the scheduler, a
   * stop signal or a slow read. Never set in production.
   */
  faults?: FaultHooks;
}

/** Points where a test can hold a worker up (see WorkerOptions.faults). */
export interface FaultHooks {
  /** The coordinator decided to commit `round` and is about to build the commit. */
  beforeCommit?(round: number): Promise<void>;
  /** The coordinator stored the snapshot of `round` and is about to point KV `checkpoint` at it. */
  beforeCheckpointRecord?(round: number): Promise<void>;
  /**
   * While true, the worker's timers (heartbeats, lease renewal, coordinator ticks) do nothing, as
   * in a process stopped by SIGSTOP; its subscriptions still run.
   */
  frozen?(): boolean;
}

/** Something a role runs in the background until it is stopped. */
export interface Stoppable {
  stop(): void | Promise<void>;
}

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
    commitsAbandoned: 0,
    roundsRetried: 0,
    coordinatorTerms: 0,
    modelHashMismatches: 0,
    replicaDivergences: 0,
    replicaRestores: 0,
  };
}

/** One worker's shared state; see the file comment. */
export class WorkerContext {
  readonly memberId: string;
  readonly workerId: string;
  readonly settings: ProtocolSettings;
  readonly publicKey: Uint8Array;
  readonly admission: Admission;
  readonly counters = emptyCounters();
  /** Opened when the worker joins; no role touches NATS before. */
  resources!: FederationResources;
  /** Set once the worker stops: background loops end, and nothing new starts. */
  stopping = false;
  private readonly sink: (line: string) => void;

  constructor(readonly options: WorkerOptions) {
    if (!isValidId(options.memberId) || !isValidId(options.workerId))
      throw new AdmissionError(
        `member id "${options.memberId}" and worker id "${options.workerId}" must be DNS labels`,
      );
    this.memberId = options.memberId;
    this.workerId = options.workerId;
    this.settings = settingsWith(options.settings);
    this.publicKey = keyPairFromPrivate(options.privateKey).publicKey;
    this.admission = new Admission(options.spec, options.specHash);
    this.sink = options.log ?? (() => {});
  }

  /** The round deadline of the federation spec, in milliseconds. */
  get deadlineMs(): number {
    return this.options.spec.sync.roundDeadlineSeconds * 1000;
  }

  /** Logs a line about this worker. */
  log(line: string): void {
    this.sink(`[${this.workerId}] ${line}`);
  }

  /** Logs a line without the worker's name (background loops that ended). */
  logPlain(line: string): void {
    this.sink(line);
  }

  /** Counts a message dropped for the reason its error carries (malformed when it has none). */
  drop(error: unknown): void {
    if (error instanceof ProtocolMessageError) this.count(error.reason, error.message);
    else this.count("malformed", String(error));
  }

  /** Counts a message dropped for reason. */
  count(reason: RejectReason, detail: string): void {
    this.counters.dropped[reason]++;
    this.log(`dropped (${reason}): ${detail}`);
  }

  /** Runs a background promise, logging instead of throwing when it fails. */
  background(work: Promise<unknown>): void {
    work.catch((error) => this.log(String(error)));
  }
}
