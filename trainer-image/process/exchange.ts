// How the workers of one trainer process reach the rest of the federation. The runtime takes an
// `ExchangeTransport` as a parameter: `LocalExchange` connects N workers inside this process (the
// standalone workstation mode); `NatsExchange` (nats-exchange.ts) joins one worker per process to
// the federation over core/protocol, and adds `join` and `roundApplied`.
import type { WorkerProgress, WorkerRef } from "../../core/protocol/index.js";
import {
  type DiLoCoWorker,
  InProcessExchange,
  type RoundCommit,
  type RoundReport,
  type UpdateExchange,
} from "../training/diloco.js";

/** The exchange side of a trainer process. */
export interface ExchangeTransport {
  /** Short name for logs ("local", "nats"). */
  readonly kind: string;
  /** The exchange endpoint of one worker of this process. */
  endpoint(worker: string): UpdateExchange;
  /**
   * A federated transport's join: brings the worker's global model (and its local model) to the
   * federation's state and says which DiLoCo round to start at. Only for one worker per process;
   * a transport without it starts from the initial weights or the local checkpoint.
   */
  join?(worker: DiLoCoWorker, local: LocalParameters): Promise<{ firstRound: number }>;
  /** Must be called first thing in the round callback of a transport that has `join`. */
  roundApplied?(report: RoundReport): void;
  /**
   * A federated transport's report of the worker's progress after a round (evaluation loss,
   * bytes sent, dense update size), which its heartbeats carry to the operator's status.
   */
  reportProgress?(progress: WorkerProgress): void;
  /**
   * A federated transport's agreed workers of a round: those whose updates the commit of DiLoCo
   * round `round` included, once this process has seen that commit (undefined before). A
   * transport without it has a fixed set of workers, the process's own.
   */
  committedWorkers?(round: number): WorkerRef[] | undefined;
  /**
   * A federated transport's live workers, once at least `minMembers` members are live, or when
   * `timeoutMs` has passed or `signal` aborted, whichever comes first.
   */
  liveWorkers?(minMembers: number, timeoutMs: number, signal?: AbortSignal): Promise<WorkerRef[]>;
  /**
   * Stops exchanging: every pending and later `exchange` call rejects with ExchangeClosedError,
   * and connections are released. Idempotent.
   */
  close(): Promise<void>;
}

/** The DiLoCo worker's local model, which takes the global parameters after a join. */
export interface LocalParameters {
  writeParameters(parameters: Float32Array): void;
}

/** A round that cannot complete because the exchange was closed (the trainer is stopping). */
export class ExchangeClosedError extends Error {
  override name = "ExchangeClosedError";
  constructor(readonly round: number) {
    super(`the exchange closed while round ${round} was open`);
  }
}

/**
 * N workers in one process: a round closes when every worker has published, and its commit lists
 * the updates in worker order (InProcessExchange), plus `close` for a clean stop.
 */
export class LocalExchange implements ExchangeTransport {
  readonly kind = "local";
  private readonly inner: InProcessExchange;
  private readonly pending = new Set<{ round: number; reject: (error: Error) => void }>();
  private closed = false;

  constructor(readonly workers: readonly string[]) {
    this.inner = new InProcessExchange(workers);
  }

  endpoint(worker: string): UpdateExchange {
    const inner = this.inner.endpoint(worker);
    return {
      exchange: (round, message) => {
        if (this.closed) return Promise.reject(new ExchangeClosedError(round));
        return new Promise<RoundCommit>((resolve, reject) => {
          const entry = { round, reject };
          this.pending.add(entry);
          inner.exchange(round, message).then(
            (commit) => {
              this.pending.delete(entry);
              resolve(commit);
            },
            (error: unknown) => {
              this.pending.delete(entry);
              reject(error);
            },
          );
        });
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.pending) entry.reject(new ExchangeClosedError(entry.round));
    this.pending.clear();
  }
}
