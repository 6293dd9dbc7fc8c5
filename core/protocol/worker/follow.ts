// Following a stream: a consumer from the start (or from the last sequence seen), recreated when
// it ends, so a server restart neither loses nor repeats a message.
import { setTimeout as sleep } from "node:timers/promises";
import { type ConsumerMessages, DeliverPolicy } from "@nats-io/jetstream";
import type { Stoppable, WorkerContext } from "./context.js";

/** Handles one stream message, in stream order. */
export type StreamHandler = (
  seq: number,
  subject: string,
  data: Uint8Array,
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
): Stoppable {
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
        const messages = await consumer.consume({ max_bytes: maxBytes });
        current = messages;
        if (stopped) await messages.close();
        for await (const m of messages) {
          if (m.seq <= lastSeq) continue;
          lastSeq = m.seq;
          await onMessage(m.seq, m.subject, m.data);
        }
      } catch (error) {
        if (!stopped && !ctx.stopping) ctx.log(`${stream}: ${String(error)}`);
      }
      if (!stopped && !ctx.stopping) await sleep(200);
    }
  })();
  return {
    stop: () => {
      stopped = true;
      current?.close().catch(() => {});
    },
  };
}
