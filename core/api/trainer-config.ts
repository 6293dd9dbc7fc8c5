// The trainer's configuration file: what the operator renders into a ConfigMap for every member,
// and what a workstation user writes by hand to join without Kubernetes. Paths are where the
// operator mounts things in a trainer pod.
import type { FederationSpec, LocalData } from "./types.generated.js";

/** Where the operator mounts the trainer's files. */
export const trainerPaths = {
  /** The rendered configuration (this file). */
  config: "/etc/fedtrain/config/trainer.json",
  configDir: "/etc/fedtrain/config",
  /** The member key Secret: `private.pem` (PKCS #8) and `public.key` (base64). */
  memberKeyDir: "/etc/fedtrain/member-key",
  /** NATS user credentials (`nats.creds`), when the member has them. */
  natsCredentialsDir: "/etc/fedtrain/nats",
  /** NATS TLS files (`ca.crt`, `tls.crt`, `tls.key`), when the member has them. */
  natsTlsDir: "/etc/fedtrain/nats-tls",
  /** The data volume, for federation.data.text.path and contribution.localData.path. */
  dataDir: "/data",
  /** Scratch space (the root file system is read-only). */
  scratchDir: "/tmp",
} as const;

/** Port of the trainer's /metrics, /healthz and /readyz. */
export const trainerMetricsPort = 9090;

/** The trainer's configuration file (trainer.json). */
export interface TrainerConfig {
  apiVersion: "fedtrain.dev/v1alpha1";
  kind: "TrainerConfig";
  /** spec.federation in canonical form (every default filled in). */
  federation: FederationSpec;
  /** `sha256:<hex>` of the canonical federation spec. */
  federationSpecHash: string;
  member: {
    id: string;
    /** Ed25519 public key, base64 of the 32 raw bytes. */
    publicKey: string;
    /**
     * PKCS #8 PEM of the member's Ed25519 private key. Workers learn their index from
     * JOB_COMPLETION_INDEX and the federation's worker count from the protocol: the file does not
     * change when the member scales, so scaling restarts no worker.
     */
    privateKeyFile: string;
  };
  transport: {
    natsUrls: string[];
    credentialsFile?: string;
    tls?: { caFile: string; certFile?: string; keyFile?: string };
  };
  /** Compute backend to use (Auto picks the best that loads). */
  backend: "Auto" | "CUDA" | "WebGPU" | "CPU";
  /** Where federation.data.text.path and localData.path are resolved. */
  dataDir: string;
  /**
   * This member's own training data (spec.contribution.localData), a path under dataDir: its
   * workers train on it, split among them, instead of on shards of federation.data. Absent: they
   * train on their shards.
   */
  localData?: LocalData;
  /**
   * Fault-injection drills for testing a federation's robustness; never for production. Absent
   * normally. The operator renders them from the TrainingFederation's `fedtrain.dev/drill-*`
   * annotations, so they stay out of spec.federation and its hash.
   */
  drill?: TrainerDrill;
}

/** Faults a trainer injects on purpose (a drill). */
export interface TrainerDrill {
  /**
   * Multiply the pseudo-gradient every worker sends by this factor before compression (e.g. -10:
   * a sign-flipped, 10× scaled poisoning member).
   */
  poisonScale?: number;
}

/** The annotation that sets `drill.poisonScale` (a number, e.g. "-10"). */
export const drillPoisonScaleAnnotation = "fedtrain.dev/drill-poison-scale";
