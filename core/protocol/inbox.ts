// Reassembles one round's updates from the messages of the update streams: a signed manifest
// (the same bytes on every shard), then its chunks, spread over the shards and so in any order.
// Every check failure drops the update and counts the reason; nothing here throws. Memory is bounded: a payload buffer is allocated only for a manifest that passed
// its signature and admission checks, at most maxUpdateBytes each and maxRoundBytes in all.
import type { RejectReason } from "./errors.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, sha256, toHex } from "./identity.js";
import type { UpdateManifest } from "./types.js";
import { decodeChunk, decodeManifest, Kind, MAGIC } from "./wire.js";

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
}

interface PendingUpdate {
  manifest: UpdateManifest;
  signer: Uint8Array;
  payload: Uint8Array;
  /** One byte per chunk: 1 once received. */
  received: Uint8Array;
  count: number;
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
  /** The accepted manifest of each sender: its copies on the other shards are not replays. */
  private readonly manifests = new Map<string, Uint8Array>();
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
   * Handles one message published on `fedtrain.<id>.update.<round>.<member>.<worker>`; subject
   * tokens are the last three of the subject.
   */
  handle(subject: string, data: Uint8Array): void {
    try {
      this.handleOrThrow(subject, data);
    } catch (error) {
      if (error instanceof ProtocolMessageError) this.options.reject(error.reason, error.message);
      else this.options.reject("malformed", String(error));
    }
  }

  private handleOrThrow(subject: string, data: Uint8Array): void {
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
      this.handleChunk(key, data);
      return;
    }
    const accepted = this.manifests.get(key);
    if (accepted && equalBytes(accepted, data)) return;
    const { body: manifest, signer } = decodeManifest(data);
    if (manifest.memberId !== memberId || manifest.workerId !== workerId)
      throw new ProtocolMessageError("malformed", "manifest sender differs from its subject");
    if (manifest.round !== this.round)
      throw new ProtocolMessageError("replayed", `manifest of round ${manifest.round} replayed`);
    if (this.decided.has(key))
      throw new ProtocolMessageError("replayed", `second update of ${key} in round ${round}`);
    const refused = this.options.admit(memberId, signer);
    if (refused) {
      this.decided.set(key, "rejected");
      throw new ProtocolMessageError(refused, `update of ${key} refused: ${refused}`);
    }
    if (manifest.size > this.options.maxUpdateBytes) {
      this.decided.set(key, "rejected");
      throw new ProtocolMessageError("oversized", `update of ${manifest.size} bytes from ${key}`);
    }
    if (this.bufferedBytes + manifest.size > this.options.maxRoundBytes) {
      this.decided.set(key, "rejected");
      throw new ProtocolMessageError("oversized", `round ${round} holds too many bytes`);
    }
    this.decided.set(key, "accepted");
    this.manifests.set(key, new Uint8Array(data));
    this.bufferedBytes += manifest.size;
    const partial: PendingUpdate = {
      manifest,
      signer,
      payload: new Uint8Array(manifest.size),
      received: new Uint8Array(manifest.chunkCount),
      count: 0,
    };
    if (manifest.chunkCount === 0) this.finish(key, partial);
    else this.partial.set(key, partial);
  }

  private handleChunk(key: string, data: Uint8Array): void {
    const partial = this.partial.get(key);
    if (!partial) {
      // Chunks of an update already refused were counted with their manifest.
      if (this.decided.get(key) === "rejected") return;
      throw new ProtocolMessageError("malformed", `chunk of ${key} without a manifest`);
    }
    const { index, data: chunk } = decodeChunk(data);
    const { manifest } = partial;
    if (index >= manifest.chunkCount) {
      this.abandon(key, partial);
      throw new ProtocolMessageError("malformed", `chunk ${index} of ${key} beyond its manifest`);
    }
    if (partial.received[index])
      throw new ProtocolMessageError("replayed", `chunk ${index} of ${key} again`);
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
    if (partial.count === manifest.chunkCount) this.finish(key, partial);
  }

  private finish(key: string, partial: PendingUpdate): void {
    this.partial.delete(key);
    if (!equalBytes(sha256(partial.payload), partial.manifest.digest)) {
      this.abandon(key, partial);
      throw new ProtocolMessageError("digest-mismatch", `payload of ${key} fails its digest`);
    }
    this.complete.set(key, {
      manifest: partial.manifest,
      signer: partial.signer,
      payload: partial.payload,
    });
    for (const listener of [...this.listeners]) listener();
  }

  private abandon(key: string, partial: PendingUpdate): void {
    this.partial.delete(key);
    this.decided.set(key, "rejected");
    this.bufferedBytes -= partial.manifest.size;
  }

  /** The completed update of a worker whose payload has this digest, if any. */
  find(memberId: string, workerId: string, digest: Uint8Array): ReceivedUpdate | undefined {
    const update = this.complete.get(workerKey(memberId, workerId));
    return update && equalBytes(update.manifest.digest, digest) ? update : undefined;
  }

  /** Whether this worker's own update was added locally (its echo from the stream is skipped). */
  isLocal = false;

  /** Adds this worker's own update without downloading it; false if one was already decided. */
  addLocal(manifest: UpdateManifest, signer: Uint8Array, payload: Uint8Array): boolean {
    const key = workerKey(manifest.memberId, manifest.workerId);
    if (this.decided.has(key)) return false;
    this.decided.set(key, "accepted");
    this.isLocal = true;
    this.bufferedBytes += payload.length;
    this.complete.set(key, { manifest, signer, payload });
    for (const listener of [...this.listeners]) listener();
    return true;
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
