// Following a stream: a consumer from the start (or from the last sequence seen), recreated when
// it ends or the connection comes back, so a server restart neither loses nor repeats a message
// and is noticed at once.
import { setTimeout as sleep } from "node:timers/promises";
import { type ConsumerMessages, DeliverPolicy } from "@nats-io/jetstream";
import type { QueuedIterator, Status } from "@nats-io/transport-node";
import type { Stoppable, WorkerContext } from "./context.js";

/** How long one pull request waits for messages (its idle heartbeats: half of this). */
const PULL_EXPIRES_MS = 4_000;

/** A stream being followed. */
export interface StreamFollower extends Stoppable {
  /** Recreates the consumer now, after the last sequence seen (it may have silently stalled). */
  refresh(): void;
}

/** Handles one stream message, in stream order. */
export type StreamHandler = (
  seq: number,
  subject: string,
  data: Uint8Array,
  /** When the server stored the message (its stream timestamp), in ms since the epoch. */
  storedAtMs: number,
) => void | Promise<void>;

/**
 * Follows a stream (optionally one subject filter) from its start, calling onMessage in order.
 * Creating the consumer fails while the server restarts, and a consumer can end on errors: it
 * is then recreated after the last sequence seen, so no message is handled twice.
 */
export function followStream(
  ctx: WorkerContext,
  stream: string,
  filter: string | undefined,
  maxBytes: number,
  onMessage: StreamHandler,
): StreamFollower {
  let stopped = false;
  let current: ConsumerMessages | undefined;
  let lastSeq = 0;
  const { js } = ctx.resources;
  (async () => {
    while (!stopped && !ctx.stopping) {
      try {
        const consumer = await js.consumers.get(stream, {
          ...(filter ? { filter_subjects: filter } : {}),
          ...(lastSeq === 0
            ? { deliver_policy: DeliverPolicy.All }
            : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }),
        });
        // Short pulls: the consumer's idle heartbeats come every half pull, and two missed ones
        // make it recover, so a restarted server is noticed within seconds, not after the
        // default 30 s pull has expired.
        const messages = await consumer.consume({ max_bytes: maxBytes, expires: PULL_EXPIRES_MS });
        current = messages;
        if (stopped) await messages.close();
        for await (const m of messages) {
          if (m.seq <= lastSeq) continue;
          lastSeq = m.seq;
          await onMessage(m.seq, m.subject, m.data, m.info.timestampNanos / 1e6);
        }
      } catch (error) {
        if (!stopped && !ctx.stopping) ctx.log(`${stream}: ${String(error)}`);
      }
      if (!stopped && !ctx.stopping) await sleep(200);
    }
  })();
  // After a reconnect the server may be a restarted one, which knows nothing of the consumer:
  // recreate it now rather than when its missed heartbeats tell.
  const status = ctx.options.nc.status() as AsyncIterable<Status> &
    Partial<Pick<QueuedIterator<Status>, "stop">>;
  (async () => {
    for await (const event of status) {
      if (stopped || ctx.stopping) break;
      if (event.type === "reconnect") current?.close().catch(() => {});
    }
  })().catch(() => {});
  return {
    stop: () => {
      stopped = true;
      status.stop?.();
      current?.close().catch(() => {});
    },
    refresh: () => {
      current?.close().catch(() => {});
    },
  };
}
