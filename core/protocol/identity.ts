// Ed25519 identities with raw 32-byte keys (base64 in the API), on node:crypto.
import crypto, { type KeyObject } from "node:crypto";
import { canonicalJson } from "../api/canonical.js";

// DER prefixes that wrap a raw 32-byte Ed25519 key as PKCS#8 (private) and SPKI (public).
const pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex");
const spkiPrefix = Buffer.from("302a300506032b6570032100", "hex");

/** A member's signing identity: raw 32-byte Ed25519 private key (seed) and public key. */
export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Generates a new Ed25519 key pair. */
export function generateKeyPair(): KeyPair {
  const { privateKey } = crypto.generateKeyPairSync("ed25519");
  return keyPairFromPrivate(
    new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32)),
  );
}

/** The key pair of a raw 32-byte private key. */
export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  const publicKey = new Uint8Array(
    publicKeyObject(privateKey).export({ format: "der", type: "spki" }).subarray(-32),
  );
  return { privateKey, publicKey };
}

const privateObjects = new WeakMap<Uint8Array, KeyObject>();
function privateObject(privateKey: Uint8Array): KeyObject {
  let key = privateObjects.get(privateKey);
  if (!key) {
    if (privateKey.length !== 32) throw new RangeError("an Ed25519 private key has 32 bytes");
    key = crypto.createPrivateKey({
      key: Buffer.concat([pkcs8Prefix, privateKey]),
      format: "der",
      type: "pkcs8",
    });
    privateObjects.set(privateKey, key);
  }
  return key;
}

/** A raw private key as PKCS #8 PEM, the form privateKeyFromPem reads. */
export function privateKeyToPem(privateKey: Uint8Array): string {
  return privateObject(privateKey).export({ format: "pem", type: "pkcs8" }).toString();
}

/** The public KeyObject of a raw private key. */
export function publicKeyObject(privateKey: Uint8Array): KeyObject {
  return crypto.createPublicKey(privateObject(privateKey));
}

/** Ed25519 signature (64 bytes) of data. */
export function sign(data: Uint8Array, privateKey: Uint8Array): Uint8Array {
  return new Uint8Array(crypto.sign(null, data, privateObject(privateKey)));
}

// Verification happens for every message; parsing the same few keys each time would dominate.
const publicObjects = new Map<string, KeyObject>();
const maxCachedKeys = 4096;

/** True when signature is a valid Ed25519 signature of data by the raw 32-byte publicKey. */
export function verify(data: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const id = Buffer.from(publicKey).toString("base64");
  let key = publicObjects.get(id);
  if (!key) {
    try {
      key = crypto.createPublicKey({
        key: Buffer.concat([spkiPrefix, publicKey]),
        format: "der",
        type: "spki",
      });
    } catch {
      return false;
    }
    if (publicObjects.size >= maxCachedKeys) publicObjects.clear();
    publicObjects.set(id, key);
  }
  try {
    return crypto.verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/** The raw 32-byte Ed25519 private key of a PKCS #8 PEM (as `openssl genpkey` writes it). */
export function privateKeyFromPem(pem: string): Uint8Array {
  const key = crypto.createPrivateKey({ key: pem, format: "pem" });
  if (key.asymmetricKeyType !== "ed25519")
    throw new RangeError(`the key is ${key.asymmetricKeyType}, not ed25519`);
  return new Uint8Array(key.export({ format: "der", type: "pkcs8" }).subarray(-32));
}

/** SHA-256 of data. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(crypto.createHash("sha256").update(data).digest());
}

/** Standard base64 of bytes (the API's key format). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Lower-case hex of bytes (digests in logs, views and object names). */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** Decodes a base64 Ed25519 key; throws RangeError unless it is exactly 32 bytes. */
export function keyFromBase64(text: string): Uint8Array {
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  if (bytes.length !== 32 || toBase64(bytes) !== text)
    throw new RangeError("an Ed25519 key is 32 bytes, 44 characters of base64");
  return bytes;
}

/** Byte-wise equality. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * SHA-256 of the canonical JSON of a value (object keys sorted, no whitespace): the federation
 * spec hash, when the caller has no hash of its own.
 */
export function canonicalHash(value: unknown): Uint8Array {
  return sha256(Buffer.from(canonicalJson(value), "utf8"));
}
