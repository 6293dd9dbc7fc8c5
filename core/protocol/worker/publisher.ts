// Publishing this worker's update: a signed manifest to every shard, the payload in chunks over
// the shards with a window of publishes in flight, then a signed "stored" message once every
// chunk is acknowledged (only then may a commit name the update).
import { payloadDigest } from "../digest.js";
import type { RoundInbox } from "../inbox.js";
import { publishDurable, UPDATE_SHARDS } from "../resources.js";
import { CHUNK_HEADER_BYTES, encodeChunkHeader, encodeManifest, encodeStored } from "../wire.js";
import type { WorkerContext } from "./context.js";

const maxChunkBytes = 1024 * 1024;
// Room in a message for the chunk header and the JetStream publish headers (message id).
const chunkHeadroom = 4096;
// Publishes in flight: enough to keep the pipe full without unbounded buffering.
const window = 8;

/** Publishes updates; see the file comment. */
export class Publisher {
  private chunkSlots: Uint8Array[] | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly completed: (inbox: RoundInbox) => void,
  ) {}

  /** Publishes payload as this worker's update of round; the round's inbox takes it at once. */
  async publish(round: number, payload: Uint8Array, inbox: RoundInbox): Promise<void> {
    const { ctx } = this;
    const { memberId, workerId } = ctx;
    const { js, names } = ctx.resources;
    const privateKey = ctx.options.privateKey;
    const chunkSize = this.chunkBytes();
    const chunkCount = Math.ceil(payload.length / chunkSize);
    const body = {
      round,
      memberId,
      workerId,
      size: payload.length,
      digest: payloadDigest(payload),
      chunkSize,
      chunkCount,
    };
    const manifest = encodeManifest(body, privateKey);
    // Our own update needs no download: the inbox takes it now and skips its echo.
    if (inbox.addLocal(body, ctx.publicKey, payload)) this.completed(inbox);
    const id = `${round}.${memberId}.${workerId}`;
    const retry = ctx.settings.publishRetryMs;
    const stopped = () => ctx.stopping;
    const subject = (shard: number) => names.updateSubject(shard, round, memberId, workerId);
    // The manifest goes to every shard first, so each shard's consumer sees it before the
    // chunks that follow it in that stream.
    await Promise.all(
      names.updatesStreams.map((_, shard) =>
        publishDurable(js, subject(shard), manifest, { msgID: `${id}.m${shard}` }, retry, stopped),
      ),
    );
    // Each slot's message buffer is reused once its publish (and any retry of it) has resolved,
    // and the slots serve the next round's publish too (unless two publishes overlap).
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
      inFlight.push(
        publishDurable(js, subject(shard), message, { msgID: `${id}.${i}` }, retry, stopped),
      );
      if (inFlight.length >= window) await inFlight.shift();
    }
    await Promise.all(inFlight);
    this.chunkSlots = slots;
    // Every chunk is acknowledged, so stored: only now may a commit name this update.
    await publishDurable(
      js,
      subject(0),
      encodeStored({ round, memberId, workerId, digest: body.digest }, privateKey),
      { msgID: `${id}.s` },
      retry,
      stopped,
    );
    inbox.markStored(memberId, workerId);
    ctx.counters.updatesSent++;
    ctx.counters.bytesSent += payload.length;
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
    const { settings, options } = this.ctx;
    if (settings.chunkBytes > 0) return settings.chunkBytes;
    const maxPayload = options.nc.info?.max_payload ?? 1024 * 1024;
    return Math.min(maxChunkBytes, maxPayload - chunkHeadroom);
  }
}
