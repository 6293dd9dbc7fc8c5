// Public entry point of the federation protocol over NATS JetStream, shared by the trainer and
// the operator. The specification is docs/protocol.md.
export { Admission } from "./admission.js";
export { PayloadHasher, payloadDigest } from "./digest.js";
export {
  AdmissionError,
  FederationNotFoundError,
  ProtocolMessageError,
  ProtocolTransportError,
  type RejectReason,
} from "./errors.js";
export {
  canonicalHash,
  generateKeyPair,
  type KeyPair,
  keyFromBase64,
  keyPairFromPrivate,
  sha256,
  toBase64,
  toHex,
} from "./identity.js";
export {
  type LedgerProblem,
  type LedgerRecord,
  type LedgerReport,
  type LedgerTrust,
  verifyFederationLedger,
  verifyLedger,
} from "./ledger.js";
export {
  boundedUpdatesOf,
  type Deregistration,
  deregisterMember,
  disagreementsOf,
  federationExists,
  publishControl,
  readFederationView,
  registerMember,
} from "./membership.js";
export {
  connectNats,
  displayUrls,
  type FederationNames,
  federationNames,
  type NatsConnectOptions,
  openExistingFederation,
  openFederation,
  readStream,
  UPDATE_SHARDS,
} from "./resources.js";
export { defaultSettings, settingsWith } from "./settings.js";
export type * from "./types.js";
export * as wire from "./wire.js";
export {
  type FaultHooks,
  FederationWorker,
  type WorkerOptions,
} from "./worker/federation-worker.js";
