// The digest of an update's payload: BLAKE3 with a 32-byte output. Every worker hashes every
// update it sends or receives, tens of MB each, every round, so this hash is the largest CPU cost
// of a round. BLAKE3 ran 3.4× faster than SHA-256 on the benchmark machine, whose CPU has SHA
// extensions, and gains more on CPUs without them. Everything small (commits, spec hashes, model
// hashes) and checkpoints, which the object store also digests with SHA-256, keep SHA-256.
import { Blake3Hasher, blake3 } from "@napi-rs/blake-hash";

/** BLAKE3-256 of a whole update payload (the manifest's `digest`). */
export function payloadDigest(payload: Uint8Array): Uint8Array {
  return new Uint8Array(blake3(asBuffer(payload)));
}

/** BLAKE3-256 over bytes fed in order, for a payload that arrives in chunks. */
export class PayloadHasher {
  private readonly hasher = new Blake3Hasher();

  update(bytes: Uint8Array): this {
    this.hasher.update(asBuffer(bytes));
    return this;
  }

  /** The digest of everything fed so far. */
  digest(): Uint8Array {
    return new Uint8Array(this.hasher.digestBuffer());
  }
}

/** The same bytes as a Buffer (a view, no copy), as the binding's signatures ask for. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
