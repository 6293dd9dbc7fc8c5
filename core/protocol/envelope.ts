// The envelope every signed protocol message travels in (docs/protocol.md, "Wire format"): a
// fixed 8-byte header, a kind-specific body, the signer's raw Ed25519 public key and a signature
// over everything before it; and the reader and writer the message bodies are coded with.
// Decoders check every length before reading and never trust a count.
import { ProtocolMessageError } from "./errors.js";
import { publicKeyObject, sign, verify } from "./identity.js";

/** "FT": the first two bytes of every message and chunk. */
export const MAGIC = 0x4654;
/** The wire-format version this implementation writes and reads. */
export const WIRE_VERSION = 1;
/** Bytes before the body: magic (2), version (1), kind (1), body length (4). */
export const HEADER_BYTES = 8;
/** Bytes after the body: public key (32) and signature (64). */
export const TRAILER_BYTES = 96;
/** Largest signed message body; a commit listing 4,096 updates fits. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** The kind byte of each message. */
export const Kind = {
  member: 1,
  heartbeat: 2,
  manifest: 3,
  commit: 4,
  checkpoint: 5,
  control: 6,
  roundStatus: 7,
  lease: 8,
  stored: 9,
  chunk: 16,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

const idPattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** True when s may be a member or worker id: a DNS label, also a valid NATS subject token. */
export function isValidId(s: string): boolean {
  return idPattern.test(s);
}

/** A decoded, signature-checked message. */
export interface Signed<T> {
  kind: Kind;
  body: T;
  /** Raw 32-byte Ed25519 public key of the signer. */
  signer: Uint8Array;
  /** The whole message as received. */
  bytes: Uint8Array;
}

/** Writes a message body, big-endian, growing its buffer as needed. */
export class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): this {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
    return this;
  }
  u16(v: number): this {
    this.reserve(2);
    this.view.setUint16(this.length, v);
    this.length += 2;
    return this;
  }
  u32(v: number): this {
    this.reserve(4);
    this.view.setUint32(this.length, v);
    this.length += 4;
    return this;
  }
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not a u64 in range: ${v}`);
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v));
    this.length += 8;
    return this;
  }
  f64(v: number): this {
    this.reserve(8);
    this.view.setFloat64(this.length, v);
    this.length += 8;
    return this;
  }
  bytes(v: Uint8Array): this {
    this.reserve(v.length);
    this.buf.set(v, this.length);
    this.length += v.length;
    return this;
  }
  fixed(v: Uint8Array, n: number): this {
    if (v.length !== n) throw new RangeError(`expected ${n} bytes, got ${v.length}`);
    return this.bytes(v);
  }
  str(v: string): this {
    const b = Buffer.from(v, "utf8");
    if (b.length > 0xffff) throw new RangeError("string longer than 65535 bytes");
    return this.u16(b.length).bytes(b);
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Reads a message body; every read checks the length first. */
export class Reader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private need(n: number): void {
    if (this.offset + n > this.buf.length)
      throw new ProtocolMessageError("truncated", `message ends before byte ${this.offset + n}`);
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.offset++);
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.offset);
    this.offset += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new ProtocolMessageError("malformed", "integer above 2^53");
    return Number(v);
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.offset);
    this.offset += 8;
    return v;
  }
  fixed(n: number): Uint8Array {
    this.need(n);
    const v = this.buf.slice(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  str(): string {
    const n = this.u16();
    this.need(n);
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.offset, n).toString("utf8");
    this.offset += n;
    return v;
  }
  id(what: string): string {
    const v = this.str();
    if (!isValidId(v)) throw new ProtocolMessageError("malformed", `${what} is not a valid id`);
    return v;
  }
  /** True when every byte has been read: an optional trailing field is absent. */
  atEnd(): boolean {
    return this.offset === this.buf.length;
  }
  end(): void {
    if (this.offset !== this.buf.length)
      throw new ProtocolMessageError("malformed", "trailing bytes after the body");
  }
}

/** Wraps body in the envelope, signed with privateKey. */
export function envelope(kind: Kind, body: Uint8Array, privateKey: Uint8Array): Uint8Array {
  if (body.length > MAX_BODY_BYTES) throw new RangeError("message body too large");
  const { publicKey, signature } = signParts(kind, body, privateKey);
  const out = new Uint8Array(HEADER_BYTES + body.length + TRAILER_BYTES);
  const view = new DataView(out.buffer);
  view.setUint16(0, MAGIC);
  view.setUint8(2, WIRE_VERSION);
  view.setUint8(3, kind);
  view.setUint32(4, body.length);
  out.set(body, HEADER_BYTES);
  out.set(publicKey, HEADER_BYTES + body.length);
  out.set(signature, HEADER_BYTES + body.length + 32);
  return out;
}

function signParts(kind: Kind, body: Uint8Array, privateKey: Uint8Array) {
  const seedAndKey = privateKeyParts(privateKey);
  const signed = new Uint8Array(HEADER_BYTES + body.length + 32);
  const view = new DataView(signed.buffer);
  view.setUint16(0, MAGIC);
  view.setUint8(2, WIRE_VERSION);
  view.setUint8(3, kind);
  view.setUint32(4, body.length);
  signed.set(body, HEADER_BYTES);
  signed.set(seedAndKey.publicKey, HEADER_BYTES + body.length);
  return { publicKey: seedAndKey.publicKey, signature: sign(signed, privateKey) };
}

const publicKeyCache = new WeakMap<Uint8Array, Uint8Array>();
function privateKeyParts(privateKey: Uint8Array): { publicKey: Uint8Array } {
  let pub = publicKeyCache.get(privateKey);
  if (!pub) {
    pub = new Uint8Array(
      publicKeyObject(privateKey).export({ format: "der", type: "spki" }).subarray(-32),
    );
    publicKeyCache.set(privateKey, pub);
  }
  return { publicKey: pub };
}

/**
 * Checks the header, length and signature of a message and returns its kind, body bytes and
 * signer. Throws {@link ProtocolMessageError} for anything else.
 */
export function openEnvelope(
  bytes: Uint8Array,
  expected?: Kind,
): { kind: Kind; body: Uint8Array; signer: Uint8Array } {
  if (bytes.length < 4) throw new ProtocolMessageError("truncated", "message too short");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== MAGIC) throw new ProtocolMessageError("malformed", "bad magic");
  const version = view.getUint8(2);
  if (version !== WIRE_VERSION)
    throw new ProtocolMessageError("unsupported-version", `wire version ${version}`);
  if (bytes.length < HEADER_BYTES + TRAILER_BYTES)
    throw new ProtocolMessageError("truncated", `message of ${bytes.length} bytes is too short`);
  const kind = view.getUint8(3) as Kind;
  if (expected !== undefined && kind !== expected)
    throw new ProtocolMessageError("malformed", `kind ${kind} where ${expected} was expected`);
  const length = view.getUint32(4);
  if (length > MAX_BODY_BYTES)
    throw new ProtocolMessageError("oversized", `body of ${length} bytes`);
  if (bytes.length < HEADER_BYTES + length + TRAILER_BYTES)
    throw new ProtocolMessageError("truncated", "message shorter than its declared body");
  if (bytes.length > HEADER_BYTES + length + TRAILER_BYTES)
    throw new ProtocolMessageError("malformed", "trailing bytes after the signature");
  const signedEnd = HEADER_BYTES + length + 32;
  const signer = bytes.slice(HEADER_BYTES + length, signedEnd);
  const signature = bytes.subarray(signedEnd, signedEnd + 64);
  if (!verify(bytes.subarray(0, signedEnd), signer, signature))
    throw new ProtocolMessageError("bad-signature", "signature does not verify");
  return { kind, body: bytes.subarray(HEADER_BYTES, HEADER_BYTES + length), signer };
}

/** Opens a message of kind and reads its whole body with read. */
export function decodeWith<T>(bytes: Uint8Array, kind: Kind, read: (r: Reader) => T): Signed<T> {
  const opened = openEnvelope(bytes, kind);
  const reader = new Reader(opened.body);
  const body = read(reader);
  reader.end();
  return { kind, body, signer: opened.signer, bytes };
}
