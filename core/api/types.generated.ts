// Generated from crds/trainingfederations.fedtrain.dev.yaml by scripts/gen-api.ts. Do not edit:
// change the CRD and run `npm run gen:api`.

import type {ObjectMeta} from "./meta.js";

/**
 * TrainingFederation makes this cluster a member of a federation of independently owned clusters that train one model together with DiLoCo-style low-communication optimisation. Create one per member cluster: spec.federation is identical in every member, spec.contribution and spec.transport are this cluster's own.
 */
export interface TrainingFederation {
  /**
   * Versioned schema of this representation of an object (fedtrain.dev/v1alpha1).
   */
  apiVersion?: string;
  /**
   * REST resource this object represents (TrainingFederation).
   */
  kind?: string;
  /**
   * Standard object metadata.
   */
  metadata?: ObjectMeta;
  spec: TrainingFederationSpec;
  status?: TrainingFederationStatus;
}
/**
 * The desired state of this member.
 */
export interface TrainingFederationSpec {
  /**
   * Pause this member: its trainers stop after checkpointing and it stops contributing; the rest of the federation carries on. Set back to false to rejoin from the latest checkpoint.
   */
  suspend: boolean;
  federation: FederationSpec;
  contribution: ContributionSpec;
  transport?: TransportSpec;
}
/**
 * The shared part: identical in every member, usually from one Git base. The operator hashes its canonical form (status.federationSpecHash) and members co-train only when their hashes agree.
 */
export interface FederationSpec {
  /**
   * The federation's name, shared by all members (a DNS label). Immutable: a different id is a different federation.
   */
  id: string;
  model: ModelSpec;
  data: DataSpec;
  training: TrainingSchedule;
  sync: SyncSpec;
  membership: Membership;
}
/**
 * The model all members train. Immutable: changing it would make the members' models incompatible.
 */
export interface ModelSpec {
  /**
   * Built-in model architecture: MLP (a multi-layer perceptron classifier) or CharTransformer (a small decoder-only character-level language model).
   */
  preset: "MLP" | "CharTransformer";
  mlp?: MlpSettings;
  charTransformer?: CharTransformerSettings;
}
/**
 * Settings of the MLP preset (defaults apply when omitted).
 */
export interface MlpSettings {
  /**
   * Width of each hidden layer, input side first.
   *
   * @minItems 1
   * @maxItems 16
   */
  hiddenLayers: number[];
  /**
   * Activation function of the hidden layers.
   */
  activation: "ReLU" | "GELU" | "Tanh";
}
/**
 * Settings of the CharTransformer preset (defaults apply when omitted).
 */
export interface CharTransformerSettings {
  /**
   * Number of transformer blocks.
   */
  layers: number;
  /**
   * Width of the residual stream (d_model).
   */
  modelWidth: number;
  /**
   * Attention heads per block; modelWidth must be a multiple of it.
   */
  heads: number;
  /**
   * Characters of context the model attends to.
   */
  contextLength: number;
  /**
   * Width of the feed-forward layer as a multiple of modelWidth.
   */
  feedForwardMultiplier: number;
}
/**
 * Where the training data comes from: exactly one of synthetic (built in, deterministic from training.seed, no download), corpus (real text shipped with the trainer, no download) or text (a URL or a file on a volume). Each worker trains on its own disjoint shard of it (see sharding), or on its member's own data (contribution.localData); the evaluation set is always this data's held-out part, the same for every member.
 */
export interface DataSpec {
  synthetic?: SyntheticData;
  corpus?: Corpus;
  text?: TextData;
  sharding: Sharding;
}
/**
 * A built-in synthetic dataset generated from training.seed.
 */
export interface SyntheticData {
  /**
   * GaussianClusters (classification, for the MLP) or Arithmetic (text of small sums and products, for the CharTransformer).
   */
  preset: "GaussianClusters" | "Arithmetic";
  /**
   * Training examples generated in total, split across workers.
   */
  trainExamples: number;
  /**
   * Held-out examples for evaluation, the same on every member.
   */
  evalExamples: number;
  /**
   * Input features per example (GaussianClusters).
   */
  features: number;
  /**
   * Number of classes (GaussianClusters).
   */
  classes: number;
  /**
   * Standard deviation of the noise around each class centre (GaussianClusters).
   */
  noise: number;
  /**
   * Largest operand in generated expressions (Arithmetic).
   */
  maxOperand: number;
}
/**
 * A built-in corpus of real text that ships with the trainer (no download at run time), with a fixed held-out split.
 */
export interface Corpus {
  /**
   * BrownCorpus: the Brown corpus of edited American English (500 samples, about 1M words, 1961), part-of-speech tags stripped to plain text; every 20th sample in file order (ca20, ca40, cb16, ...: 25 samples, 5 %) is held out for evaluation.
   */
  preset: "BrownCorpus";
  /**
   * Character (one token per character; the vocabulary is the corpus's distinct characters) or Byte (one token per UTF-8 byte, 256 tokens).
   */
  encoding: "Character" | "Byte";
}
/**
 * Text or JSONL training data, read from a URL or from a file on the volume that contribution.dataVolumeClaim mounts at /data.
 */
export interface TextData {
  /**
   * Text (one document, split into examples) or JSONL (one JSON object per line).
   */
  format: "Text" | "JSONL";
  /**
   * An https URL to download the data from, on a public host (not localhost, a cluster-internal name or a private, loopback or link-local address: the trainer must not be a way into the member's network).
   */
  url?: string;
  /**
   * A path relative to /data, the mount point of contribution.dataVolumeClaim.
   */
  path?: string;
  /**
   * The JSONL field that holds the text (default "text").
   */
  field?: string;
  /**
   * Fraction of the text held out for evaluation.
   */
  evalFraction: number;
}
/**
 * How the training data is split across workers.
 */
export interface Sharding {
  /**
   * How the examples are dealt to the federation's workers, which are named by the previous round's commit (every member computes the same deal): IID (every worker sees the same distribution) or NonIID (each worker's label or task mix is drawn from a Dirichlet distribution).
   */
  strategy: "IID" | "NonIID";
  /**
   * Dirichlet concentration for NonIID; smaller is more skewed.
   */
  concentration: number;
}
/**
 * The schedule and the two optimisers of DiLoCo.
 */
export interface TrainingSchedule {
  /**
   * Outer rounds (synchronisations) of the whole run.
   */
  rounds: number;
  /**
   * Inner optimiser steps each worker takes between synchronisations (H).
   */
  innerSteps: number;
  /**
   * Examples per inner step on each worker.
   */
  batchSize: number;
  /**
   * Seed of model initialisation and synthetic data; identical results on every member.
   */
  seed: number;
  innerOptimizer: InnerOptimizer;
  outerOptimizer: OuterOptimizer;
}
/**
 * AdamW, run locally by every worker for innerSteps steps.
 */
export interface InnerOptimizer {
  /**
   * Peak learning rate.
   */
  learningRate: number;
  /**
   * Decoupled weight decay.
   */
  weightDecay: number;
  /**
   * Inner steps of linear learning-rate warm-up at the start of the run.
   */
  warmupSteps: number;
  /**
   * Learning-rate decay after warm-up over the run's rounds × innerSteps inner steps: Cosine (half a cosine, as in DiLoCo), Linear, or Constant.
   */
  schedule: "Cosine" | "Linear" | "Constant";
  /**
   * The learning rate at the end of the decay, as a fraction of the peak.
   */
  finalLearningRateRatio: number;
  /**
   * Exponential decay of the first moment.
   */
  beta1: number;
  /**
   * Exponential decay of the second moment.
   */
  beta2: number;
}
/**
 * SGD applied to the aggregated pseudo-gradient once per round (DiLoCo uses lr 0.7, Nesterov momentum 0.9).
 */
export interface OuterOptimizer {
  /**
   * Outer learning rate.
   */
  learningRate: number;
  /**
   * Momentum coefficient.
   */
  momentum: number;
  /**
   * Use Nesterov momentum.
   */
  nesterov: boolean;
}
/**
 * How workers exchange and combine their updates each round.
 */
export interface SyncSpec {
  compression: Compression;
  aggregation: Aggregation;
  quorum: Quorum;
  /**
   * Seconds after a round opens until the coordinator closes it with whatever quorum it has.
   */
  roundDeadlineSeconds: number;
  /**
   * Start the next round's inner steps while this round is exchanged, applying it one round late.
   */
  overlap: boolean;
  /**
   * Rounds between checkpoints of the global model to the object store.
   */
  checkpointEveryRounds: number;
}
/**
 * How pseudo-gradients are compressed before they are sent.
 */
export interface Compression {
  /**
   * None (dense fp32), Int8 (dense int8 with a per-chunk scale) or TopK (the largest entries only, with low-bit values and error feedback).
   */
  method: "None" | "Int8" | "TopK";
  int8?: Int8Settings;
  topK?: TopKSettings;
}
/**
 * Settings of the Int8 method (defaults apply when omitted).
 */
export interface Int8Settings {
  /**
   * Values that share one fp32 scale.
   */
  chunkSize: number;
}
/**
 * Settings of the TopK method (defaults apply when omitted).
 */
export interface TopKSettings {
  /**
   * Fraction of entries sent each round, in (0, 1].
   */
  density: number;
  /**
   * Bits per sent value (2, 4 or 8).
   */
  valueBits: number;
  /**
   * Carry what was not sent into the next round (recommended).
   */
  errorFeedback: boolean;
}
/**
 * How the round's updates are combined; robust rules resist poisoned or broken members.
 */
export interface Aggregation {
  /**
   * Mean, TrimmedMean (drop the largest and smallest values of each coordinate), Median (coordinate-wise) or CentredClip (clip each update's distance to a running centre).
   */
  rule: "Mean" | "TrimmedMean" | "Median" | "CentredClip";
  /**
   * The protection the organiser states: how many faulty updates every round must withstand. TrimmedMean trims this many values at each end of every coordinate; Median and CentredClip need no setting but state it here to be checked. A round with fewer than 2 × tolerate + 1 updates cannot give it: it is still applied, and flagged (trainer log line and metric fedtrain_trainer_rounds_unprotected_total).
   */
  tolerate?: number;
  /**
   * TrimmedMean without tolerate: the fraction of each round's updates to withstand, rounded up (⌈trimFraction × N⌉ values trimmed at each end of every coordinate; default 0.2); a round too small to trim that many is flagged as with tolerate.
   */
  trimFraction?: number;
  centredClip?: CentredClipSettings;
  normBound?: NormBound;
}
/**
 * Settings of CentredClip (defaults apply when omitted). Each round starts from the previous round's aggregate (kept in checkpoints).
 */
export interface CentredClipSettings {
  /**
   * An absolute clipping radius: the largest L2 distance from the centre an update may pull with.
   */
  radius?: number;
  /**
   * The clipping radius as a multiple of the median L2 distance of the round's updates from the previous aggregate: relative to the honest spread, whatever the updates' scale (default 2 when radius is not set).
   */
  radiusMedianMultiple?: number;
  /**
   * Clipping iterations.
   */
  iterations: number;
}
/**
 * Drop or clip updates whose L2 norm is out of bounds, before aggregation; recorded per member.
 */
export interface NormBound {
  /**
   * Drop the update, or Clip it to the bound.
   */
  action: "Drop" | "Clip";
  /**
   * An absolute bound on an update's L2 norm.
   */
  maxNorm?: number;
  /**
   * A bound relative to the round's median update norm.
   */
  maxMedianMultiple?: number;
}
/**
 * When a round may close: with at least minMembers members and at least fraction of the active members having contributed (both when both are set).
 */
export interface Quorum {
  /**
   * The fewest members whose updates a round needs.
   */
  minMembers?: number;
  /**
   * The smallest fraction of active members whose updates a round needs, in (0, 1].
   */
  fraction?: number;
}
/**
 * Who may contribute to the federation.
 */
export interface Membership {
  /**
   * Open (any member with a matching spec hash) or Allowlist (only the keys in members).
   */
  policy: "Open" | "Allowlist";
  /**
   * Members admitted under the Allowlist policy, each with its Ed25519 public key.
   *
   * @maxItems 256
   */
  members: AllowedMember[];
  /**
   * Ed25519 public keys (base64) whose signed control messages (fedtrain control) may pause and resume the whole federation, and exclude or readmit a member.
   *
   * @maxItems 16
   */
  organiserKeys: string[];
}
/**
 * One admitted member.
 */
export interface AllowedMember {
  /**
   * The member id (a DNS label), as in that member's contribution.memberId.
   */
  id: string;
  /**
   * The member's Ed25519 public key, base64 (44 characters), as shown in its status.publicKey.
   */
  publicKey: string;
}
/**
 * The local part: what this cluster contributes. Changing replicas is elastic: workers come and go between rounds.
 */
export interface ContributionSpec {
  /**
   * This cluster's id in the federation (a DNS label). Defaults to the operator's cluster id.
   */
  memberId?: string;
  /**
   * Trainer workers this cluster runs (0 keeps the membership without training).
   */
  replicas: number;
  /**
   * GPUs each worker requests.
   */
  gpusPerReplica: number;
  /**
   * Extended resource name of the GPUs to request.
   */
  gpuResourceName: string;
  /**
   * Compute backend of the trainers: Auto (the best that loads), CUDA (tfjs-node-gpu), WebGPU (Dawn over Vulkan) or CPU (native, else WASM).
   */
  backend: "Auto" | "CUDA" | "WebGPU" | "CPU";
  /**
   * Trainer image; defaults to the operator's configured trainer image.
   */
  image?: string;
  /**
   * Pull policy of the trainer image.
   */
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  resources?: ResourceRequirements;
  /**
   * Node labels a trainer's node must have.
   */
  nodeSelector?: {
    [k: string]: string | undefined;
  };
  /**
   * Tolerations of the trainer pods, for example of a GPU node taint.
   *
   * @maxItems 32
   */
  tolerations?: Toleration[];
  /**
   * PriorityClass of the trainer pods.
   */
  priorityClassName?: string;
  /**
   * ServiceAccount the trainer pods run as (they need no Kubernetes API access).
   */
  serviceAccountName?: string;
  /**
   * A Kueue LocalQueue in this namespace: the trainer Job is labelled kueue.x-k8s.io/queue-name and Kueue admits it against the queue's quota (the operator then never sets the Job's spec.suspend, which Kueue owns). Suspending this member, or replicas 0, deletes the Job, releasing the quota; resuming queues a new one.
   */
  queueName?: string;
  /**
   * Size limit of each trainer's scratch space (an emptyDir on the node's disk, for downloaded data and local checkpoints), as a Kubernetes quantity of at most 1Ti; a trainer that writes more is evicted.
   */
  scratchSize: string;
  /**
   * A PersistentVolumeClaim mounted read-only at /data, for federation.data.text.path and localData.path.
   */
  dataVolumeClaim?: string;
  localData?: LocalData;
}
/**
 * CPU and memory requests and limits of each trainer (GPUs come from gpusPerReplica).
 */
export interface ResourceRequirements {
  /**
   * Minimum resources each trainer needs, as Kubernetes quantities.
   */
  requests?: {
    [k: string]: number | string | undefined;
  };
  /**
   * Maximum resources each trainer may use, as Kubernetes quantities.
   */
  limits?: {
    [k: string]: number | string | undefined;
  };
}
/**
 * A toleration, as in a Pod spec.
 */
export interface Toleration {
  /**
   * The taint key the toleration applies to; empty matches all keys.
   */
  key?: string;
  /**
   * Exists or Equal (default Equal).
   */
  operator?: "Exists" | "Equal";
  /**
   * The taint value the toleration matches (Equal only).
   */
  value?: string;
  /**
   * The taint effect to match; empty matches all effects.
   */
  effect?: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
  /**
   * How long a NoExecute taint is tolerated before eviction.
   */
  tolerationSeconds?: number;
}
/**
 * This member's own training data, read from the volume that dataVolumeClaim mounts at /data: its workers train on it (split among them) instead of on a shard of federation.data, whose held-out part stays the shared evaluation set. It never leaves the cluster: only compressed pseudo-gradients do. Needs text data in the federation's vocabulary (characters outside it are skipped and counted).
 */
export interface LocalData {
  /**
   * Text (one document) or JSONL (one JSON object per line).
   */
  format: "Text" | "JSONL";
  /**
   * A path relative to /data, the mount point of dataVolumeClaim.
   */
  path: string;
  /**
   * The JSONL field that holds the text (default "text").
   */
  field?: string;
}
/**
 * The local part: how this cluster reaches the federation's NATS. Defaults to the operator's configured connection.
 */
export interface TransportSpec {
  /**
   * NATS server URLs (nats://, tls://, ws:// or wss://); the client fails over between them.
   *
   * @minItems 1
   * @maxItems 16
   */
  natsUrls?: string[];
  credentialsSecretRef?: SecretReference;
  /**
   * A Secret in this namespace with ca.crt (and tls.crt, tls.key for mutual TLS).
   */
  tlsSecretRef?: SecretReference;
}
/**
 * A Secret in this namespace whose key nats.creds holds the NATS user credentials.
 */
export interface SecretReference {
  /**
   * Name of the Secret.
   */
  name: string;
}
/**
 * The federation as seen from this member, written by the operator.
 */
export interface TrainingFederationStatus {
  /**
   * The metadata.generation this status describes.
   */
  observedGeneration?: number;
  /**
   * Ready summarises; Valid, Joined, TrainersReady, Synced and Degraded say why.
   *
   * @maxItems 16
   */
  conditions?: Condition[];
  /**
   * A one-word summary derived from observation: Pending, Training, Suspended, Completed, Failed or Invalid.
   */
  phase?: "Pending" | "Training" | "Suspended" | "Completed" | "Failed" | "Invalid";
  /**
   * sha256 of the canonical form of spec.federation; members co-train only when it agrees.
   */
  federationSpecHash?: string;
  /**
   * This member's id (spec.contribution.memberId, else the operator's cluster id).
   */
  memberId?: string;
  /**
   * This member's Ed25519 public key (base64), to submit to the federation's allowlist.
   */
  publicKey?: string;
  /**
   * The latest round committed by the federation.
   */
  round?: number;
  /**
   * The rounds of the whole run (spec.federation.training.rounds).
   */
  rounds?: number;
  /**
   * Round progress for display, "round/rounds".
   */
  progress?: string;
  /**
   * Members that contributed to the latest round.
   */
  activeMembers?: number;
  /**
   * The federation's members as seen from here.
   *
   * @maxItems 256
   */
  members?: MemberStatus[];
  trainers?: TrainerCounts;
  /**
   * Trainers ready out of desired, for display, "ready/desired".
   */
  trainersReady?: string;
  /**
   * The latest training loss reported by this member's workers.
   */
  loss?: number;
  /**
   * Evaluation loss of the global model after the latest round.
   */
  evalLoss?: number;
  /**
   * Bytes this member's workers sent in the latest round.
   */
  bytesSentPerRound?: number;
  /**
   * Dense fp32 size of an update divided by its compressed size.
   */
  compressionRatio?: number;
  lastCheckpoint?: CheckpointReference;
}
/**
 * One aspect of this member's state, in the standard Kubernetes condition shape.
 */
export interface Condition {
  /**
   * The aspect this condition describes, in CamelCase.
   */
  type: string;
  /**
   * True, False or Unknown.
   */
  status: "True" | "False" | "Unknown";
  /**
   * The metadata.generation the condition was computed from.
   */
  observedGeneration?: number;
  /**
   * When status last changed.
   */
  lastTransitionTime: string;
  /**
   * A CamelCase reason for the last transition.
   */
  reason: string;
  /**
   * A human-readable explanation.
   */
  message: string;
}
/**
 * One member of the federation.
 */
export interface MemberStatus {
  /**
   * The member id.
   */
  id: string;
  /**
   * Active (heartbeating and contributing), Joining, Stale (missed heartbeats), Left, Refused (spec hash or key not admitted), or Excluded (by an organiser's signed control message: no coordinator commits its updates until it is readmitted).
   */
  state: "Active" | "Joining" | "Stale" | "Left" | "Refused" | "Excluded";
  /**
   * Why the member is in this state, when it is not Active.
   */
  reason?: string;
  /**
   * Trainer workers this member runs.
   */
  trainers?: number;
  /**
   * When this member last announced itself.
   */
  lastHeartbeat?: string;
  /**
   * Rounds whose commit included an update of this member.
   */
  roundsContributed?: number;
  /**
   * Updates of this member that the norm bound (spec.federation.sync.aggregation.normBound) scaled down onto the bound, as counted by the workers since they started (the highest count any admitted worker reports).
   */
  updatesClipped?: number;
  /**
   * Updates of this member that the norm bound left out of the aggregate, as counted by the workers since they started (the highest count any admitted worker reports).
   */
  updatesDropped?: number;
  /**
   * Cosine between this member's update and the aggregate of the last round scored (the lowest of its updates); every worker computes the same. An attacker's is often negative. Rounded to 3 decimals.
   */
  updateCosine?: number;
  /**
   * That cosine averaged over the rounds scored, exponentially (weight 0.2 on the newest round), as the admitted worker that scored the member over the most rounds reports it; kept after the workers leave. Rounded to 3 decimals.
   */
  reputation?: number;
}
/**
 * This member's trainer workers.
 */
export interface TrainerCounts {
  /**
   * Workers that should run (spec.contribution.replicas, or 0 when suspended).
   */
  desired?: number;
  /**
   * Workers running and ready.
   */
  ready?: number;
}
/**
 * The latest checkpoint of the global model in the object store.
 */
export interface CheckpointReference {
  /**
   * The round the checkpoint was taken after.
   */
  round?: number;
  /**
   * sha256 digest of the checkpoint, as recorded in the ledger.
   */
  digest?: string;
}
