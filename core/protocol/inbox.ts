// Reassembles one round's updates from the messages of the update subjects: a signed manifest
// (the same bytes on every shard), then its chunks, spread over the shards and so in any order,
// then the sender's signed notice that the chunks are stored. Messages come live (core NATS, as
// they are published) and, when the live path may have missed some, again from the update
// streams: copies of what was already taken are dropped quietly. Every check failure drops the
// update and counts the reason; nothing here throws. Memory is bounded: a payload buffer is
// allocated only for a manifest that passed its signature and admission checks, at most
// maxUpdateBytes each and maxRoundBytes in all.
import { PayloadHasher } from "./digest.js";
import type { RejectReason } from "./errors.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, toHex } from "./identity.js";
import type { UpdateManifest } from "./types.js";
import { decodeChunk, decodeManifest, decodeStored, Kind, MAGIC } from "./wire.js";

/** A verified, complete update. */
export interface ReceivedUpdate {
  manifest: UpdateManifest;
  signer: Uint8Array;
  payload: Uint8Array;
}

/** What an inbox needs from its worker. */
export interface InboxOptions {
  round: number;
  maxUpdateBytes: number;
  maxRoundBytes: number;
  /** undefined when memberId may contribute with this key; else why not. */
  admit(memberId: string, publicKey: Uint8Array): RejectReason | undefined;
  reject(reason: RejectReason, detail: string): void;
  /** Throws when the model could not use a payload (ReplicaModel.validate). */
  validate?(payload: Uint8Array): void;
  /**
   * Where payload buffers come from (a PayloadPool that recycles the buffers of applied rounds);
   * a fresh buffer each time when absent. Every byte is overwritten before anyone reads it.
   */
  allocate?(size: number): Uint8Array;
  /**
   * A live message shows that the live path missed one before it (a chunk or stored notice
   * without its manifest, a stored notice before all chunks): the round must be read from the
   * update streams.
   */
  onGap?(): void;
}

/** Where a message came from: published just now (core NATS), or read from an update stream. */
export type MessageSource = "live" | "stored";

interface PendingUpdate {
  manifest: UpdateManifest;
  signer: Uint8Array;
  payload: Uint8Array;
  /** One byte per chunk: 1 once received. */
  received: Uint8Array;
  count: number;
  /** The digest of the chunks received in order so far: hashing keeps up with the arrivals. */
  hash: PayloadHasher;
  hashedChunks: number;
}

/** The key of a worker's update in a round. */
export function workerKey(memberId: string, workerId: string): string {
  return `${memberId}.${workerId}`;
}

/** Collects one round's updates. */
export class RoundInbox {
  readonly round: number;
  readonly complete = new Map<string, ReceivedUpdate>();
  private readonly partial = new Map<string, PendingUpdate>();
  /** Senders whose manifest this round was accepted or rejected: later manifests are replays. */
  private readonly decided = new Map<string, "accepted" | "rejected">();
  /**
   * Senders (subjects) with only refused manifests so far: their chunks and notices are dropped
   * quietly (counted with the manifest) until a manifest of the subject's member is accepted.
   */
  private readonly refused = new Set<string>();
  /** The decided manifest of each sender: its copies on the other shards are not replays. */
  private readonly manifests = new Map<string, Uint8Array>();
  /** Senders whose stored notice was accepted: only their updates may be committed. */
  private readonly stored = new Set<string>();
  /** Complete updates whose payload the model refused: never committed, never applied. */
  private readonly unusable = new Set<string>();
  /** Whether live messages were taken: the update streams then deliver copies of them. */
  private tookLive = false;
  private bufferedBytes = 0;
  private listeners = new Set<() => void>();

  constructor(private readonly options: InboxOptions) {
    this.round = options.round;
  }

  /** Bytes of payload held (complete and in progress). */
  get bytes(): number {
    return this.bufferedBytes;
  }

  /** Calls listener after each completed update until the returned function is called. */
  onComplete(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Handles one message published on `fedtrain.<id>.update.<shard>.<round>.<member>.<worker>`;
   * subject tokens are the last three of the subject.
   */
  handle(subject: string, data: Uint8Array, source: MessageSource = "stored"): void {
    if (source === "live") this.tookLive = true;
    try {
      this.handleOrThrow(subject, data, source);
    } catch (error) {
      if (error instanceof ProtocolMessageError) this.options.reject(error.reason, error.message);
      else this.options.reject("malformed", String(error));
    }
  }

  private handleOrThrow(subject: string, data: Uint8Array, source: MessageSource): void {
    const tokens = subject.split(".");
    const memberId = tokens[tokens.length - 2];
    const workerId = tokens[tokens.length - 1];
    const round = Number(tokens[tokens.length - 3]);
    if (!memberId || !workerId || round !== this.round)
      throw new ProtocolMessageError(
        "malformed",
        `subject ${subject} is not of round ${this.round}`,
      );
    const key = workerKey(memberId, workerId);
    if (data.length >= 4 && data[3] === Kind.chunk && (data[0]! << 8) + data[1]! === MAGIC) {
      this.handleChunk(key, data, source);
      return;
    }
    if (data.length >= 4 && data[3] === Kind.stored) {
      this.handleStored(key, data, source);
      return;
    }
    const decided = this.manifests.get(key);
    if (decided && equalBytes(decided, data)) return;
    const { body: manifest, signer } = decodeManifest(data);
    if (manifest.memberId !== memberId || manifest.workerId !== workerId)
      throw new ProtocolMessageError("malformed", "manifest sender differs from its subject");
    if (manifest.round !== this.round)
      throw new ProtocolMessageError("replayed", `manifest of round ${manifest.round} replayed`);
    if (this.decided.has(key))
      throw new ProtocolMessageError("replayed", `second update of ${key} in round ${round}`);
    // Only a manifest its subject's member signed (and may send) takes the sender's slot: one
    // signed by anybody else is dropped without deciding anything, or any member could silence
    // another by publishing first on its subject.
    const refused = this.options.admit(memberId, signer);
    if (refused) {
      this.refused.add(key);
      throw new ProtocolMessageError(refused, `update of ${key} refused: ${refused}`);
    }
    this.manifests.set(key, new Uint8Array(data));
    if (manifest.size > this.options.maxUpdateBytes) {
      this.decided.set(key, "rejected");
      throw new ProtocolMessageError("oversized", `update of ${manifest.size} bytes from ${key}`);
    }
    if (this.bufferedBytes + manifest.size > this.options.maxRoundBytes) {
      this.decided.set(key, "rejected");
      throw new ProtocolMessageError("oversized", `round ${round} holds too many bytes`);
    }
    this.decided.set(key, "accepted");
    this.bufferedBytes += manifest.size;
    const partial: PendingUpdate = {
      manifest,
      signer,
      payload: this.options.allocate?.(manifest.size) ?? uninitialised(manifest.size),
      received: new Uint8Array(manifest.chunkCount),
      count: 0,
      hash: new PayloadHasher(),
      hashedChunks: 0,
    };
    if (manifest.chunkCount === 0) this.finish(key, partial);
    else this.partial.set(key, partial);
  }

  private handleChunk(key: string, data: Uint8Array, source: MessageSource): void {
    const partial = this.partial.get(key);
    if (!partial) {
      const decided = this.decided.get(key);
      // Chunks of an update already refused were counted with their manifest.
      if (decided === "rejected" || (!decided && this.refused.has(key))) return;
      if (decided === "accepted") {
        this.duplicate(`chunk of ${key} after its update`, source);
        return;
      }
      if (source === "live") {
        this.options.onGap?.();
        return;
      }
      throw new ProtocolMessageError("malformed", `chunk of ${key} without a manifest`);
    }
    const { index, data: chunk } = decodeChunk(data);
    const { manifest } = partial;
    if (index >= manifest.chunkCount) {
      this.abandon(key, partial);
      throw new ProtocolMessageError("malformed", `chunk ${index} of ${key} beyond its manifest`);
    }
    if (partial.received[index]) {
      this.duplicate(`chunk ${index} of ${key} again`, source);
      return;
    }
    const offset = index * manifest.chunkSize;
    const expected = Math.min(manifest.chunkSize, manifest.size - offset);
    if (chunk.length !== expected) {
      this.abandon(key, partial);
      const reason = chunk.length < expected ? "truncated" : "malformed";
      throw new ProtocolMessageError(reason, `chunk ${index} of ${key} has the wrong size`);
    }
    partial.payload.set(chunk, offset);
    partial.received[index] = 1;
    partial.count++;
    hashInOrder(partial);
    if (partial.count === manifest.chunkCount) this.finish(key, partial);
  }

  /**
   * A copy of a message already taken: the update streams repeat what came live, quietly; any
   * other copy (a retried publish, a replay) is counted.
   */
  private duplicate(detail: string, source: MessageSource): void {
    if (source === "stored" && this.tookLive) return;
    throw new ProtocolMessageError("replayed", detail);
  }

  private handleStored(key: string, data: Uint8Array, source: MessageSource): void {
    const decided = this.decided.get(key);
    if (decided === "rejected" || (!decided && this.refused.has(key))) return;
    if (!decided) {
      if (source === "live") {
        this.options.onGap?.();
        return;
      }
      throw new ProtocolMessageError("malformed", `stored notice of ${key} without a manifest`);
    }
    if (this.stored.has(key)) {
      this.duplicate(`stored notice of ${key} again`, source);
      return;
    }
    const { body, signer } = decodeStored(data);
    const update = this.partial.get(key) ?? this.complete.get(key);
    if (!update) return; // dropped after its manifest (digest mismatch): nothing to commit
    const { manifest } = update;
    if (
      body.round !== this.round ||
      body.memberId !== manifest.memberId ||
      body.workerId !== manifest.workerId ||
      !equalBytes(body.digest, manifest.digest)
    )
      throw new ProtocolMessageError("malformed", `stored notice of ${key} for another update`);
    if (!equalBytes(signer, update.signer))
      throw new ProtocolMessageError("unknown-key", `stored notice of ${key} by another key`);
    this.stored.add(key);
    if (this.partial.has(key) && source === "live") this.options.onGap?.();
    if (this.complete.has(key)) this.notify();
  }

  private finish(key: string, partial: PendingUpdate): void {
    this.partial.delete(key);
    if (!equalBytes(partial.hash.digest(), partial.manifest.digest)) {
      this.abandon(key, partial);
      throw new ProtocolMessageError("digest-mismatch", `payload of ${key} fails its digest`);
    }
    this.complete.set(key, {
      manifest: partial.manifest,
      signer: partial.signer,
      payload: partial.payload,
    });
    try {
      this.options.validate?.(partial.payload);
    } catch (error) {
      // Kept (a commit may still name it) but marked, so it is never committed or applied.
      this.unusable.add(key);
      throw new ProtocolMessageError("malformed", `payload of ${key} does not decode: ${error}`);
    } finally {
      this.notify();
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private abandon(key: string, partial: PendingUpdate): void {
    this.partial.delete(key);
    this.decided.set(key, "rejected");
    this.bufferedBytes -= partial.manifest.size;
  }

  /**
   * The complete updates whose senders said they are stored: the ones a commit may name, so that
   * a worker that reads the round from the update streams later finds them.
   */
  committable(): Map<string, ReceivedUpdate> {
    const out = new Map<string, ReceivedUpdate>();
    for (const [key, update] of this.complete)
      if (this.stored.has(key) && !this.unusable.has(key)) out.set(key, update);
    return out;
  }

  /** Whether the model refused this complete update's payload (ReplicaModel.validate). */
  isUnusable(memberId: string, workerId: string): boolean {
    return this.unusable.has(workerKey(memberId, workerId));
  }

  /** The completed update of a worker whose payload has this digest, if any. */
  find(memberId: string, workerId: string, digest: Uint8Array): ReceivedUpdate | undefined {
    const update = this.complete.get(workerKey(memberId, workerId));
    return update && equalBytes(update.manifest.digest, digest) ? update : undefined;
  }

  /** Whether this worker's own update was added locally (its echo from the stream is skipped). */
  isLocal = false;
  private localKey: string | undefined;

  /** Marks this worker's own update stored, once the update streams acknowledged every chunk. */
  markStored(memberId: string, workerId: string): void {
    this.stored.add(workerKey(memberId, workerId));
    this.notify();
  }

  /** Adds this worker's own update without downloading it; false if one was already decided. */
  addLocal(manifest: UpdateManifest, signer: Uint8Array, payload: Uint8Array): boolean {
    const key = workerKey(manifest.memberId, manifest.workerId);
    if (this.decided.has(key)) return false;
    this.decided.set(key, "accepted");
    this.isLocal = true;
    this.localKey = key;
    this.bufferedBytes += payload.length;
    this.complete.set(key, { manifest, signer, payload });
    this.notify();
    return true;
  }

  /**
   * The payload buffers this inbox downloaded (its own update's, the caller's, excluded), to be
   * recycled once nothing reads them any more: after the round was applied.
   */
  downloadedPayloads(): Uint8Array[] {
    return [...this.complete].filter(([key]) => key !== this.localKey).map(([, u]) => u.payload);
  }

  /** Debug summary. */
  describe(): string {
    const done = [...this.complete.values()].map(
      (u) =>
        `${u.manifest.memberId}.${u.manifest.workerId}:${toHex(u.manifest.digest).slice(0, 8)}`,
    );
    return `round ${this.round}: ${done.join(", ")}`;
  }
}

/** Feeds the hash every chunk that now continues the in-order prefix. */
function hashInOrder(partial: PendingUpdate): void {
  const { manifest, payload, received, hash } = partial;
  while (partial.hashedChunks < manifest.chunkCount && received[partial.hashedChunks]) {
    const start = partial.hashedChunks * manifest.chunkSize;
    hash.update(payload.subarray(start, Math.min(manifest.size, start + manifest.chunkSize)));
    partial.hashedChunks++;
  }
}

/**
 * Payload buffers of the last applied round, kept for the next rounds' downloads: a federation's
 * updates have about the same size round after round, and allocating tens of MB per update each
 * round costs page faults and, above all, full garbage collections (V8 collects when external
 * memory grows). A buffer is taken only by a payload of exactly its size; buffers not taken by the
 * time the next round is recycled are let go, so the pool holds at most one round's downloads
 * (and never more than `maxBytes`).
 */
export class PayloadPool {
  private free = new Map<number, Uint8Array[]>();
  private held = 0;

  constructor(private readonly maxBytes: number) {}

  /** Bytes held for reuse. */
  get bytes(): number {
    return this.held;
  }

  /** A buffer of `size` bytes with arbitrary contents. */
  take(size: number): Uint8Array {
    const list = this.free.get(size);
    const buffer = list?.pop();
    if (!buffer) return uninitialised(size);
    if (list!.length === 0) this.free.delete(size);
    this.held -= size;
    return buffer;
  }

  /**
   * Replaces the held buffers with these (an applied round's downloads); the caller must not
   * read or write them afterwards.
   */
  recycle(buffers: Iterable<Uint8Array>): void {
    this.free = new Map();
    this.held = 0;
    for (const buffer of buffers) {
      // Only whole buffers, as take() hands out: never a view into something larger.
      if (buffer.byteOffset !== 0 || buffer.byteLength !== buffer.buffer.byteLength) continue;
      if (this.held + buffer.byteLength > this.maxBytes) continue;
      const list = this.free.get(buffer.byteLength) ?? [];
      list.push(buffer);
      this.free.set(buffer.byteLength, list);
      this.held += buffer.byteLength;
    }
  }
}

/**
 * A byte array without the zero fill, for a payload that every chunk overwrites before it is
 * complete (and no one sees it before). A plain Uint8Array, not a Buffer: slice() copies.
 */
function uninitialised(size: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
}
