import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { TrainingFederation } from "../../../core/api/index.js";
import { federationSpecHash } from "../../../core/api/index.js";
import { federation } from "../../../test/fixtures/federation.js";
import { checkTrainerConfig } from "../../../trainer-image/process/trainer-config.js";
import {
  appliedHashAnnotation,
  backendOf,
  type ChildSettings,
  childNames,
  desiredConfigMap,
  desiredJob,
  desiredLeaveJob,
  queuedAndStopped,
  semanticErrors,
  templateHashAnnotation,
} from "./desired.js";

const settings: ChildSettings = {
  clusterId: "alpine",
  trainerImage: "ghcr.io/fedtrain/trainer:0.1.0",
  defaultBackend: "Auto",
  natsUrls: ["nats://nats:4222"],
  natsCredentialsSecret: undefined,
  natsTlsSecret: undefined,
};
const publicKey = `${"K".repeat(43)}=`;

/** A stored (defaulted) TrainingFederation with the given changes to its spec. */
const member = (change: (spec: Record<string, any>) => void = () => {}): TrainingFederation =>
  federation().uid("uid-1").replicas(2).spec(change).stored();

describe("desired children", () => {
  test("child names fit 63 characters and stay distinct", () => {
    assert.deepEqual(childNames("m"), {
      configMap: "m-trainer-config",
      job: "m-trainers",
      keySecret: "m-member-key",
      leaveJob: "m-leave",
    });
    const long = childNames("x".repeat(80));
    for (const name of Object.values(long)) assert.ok(name.length <= 63, name);
    assert.notEqual(childNames(`${"x".repeat(80)}a`).job, long.job);
  });

  test("a Kueue queue: the Job carries the queue label and no suspend, which Kueue owns", () => {
    const queued = member((spec) => {
      spec.contribution.queueName = "gpu-team";
    });
    const job = desiredJob(queued, settings, "hash");
    assert.equal(job.metadata?.labels?.["kueue.x-k8s.io/queue-name"], "gpu-team");
    assert.equal(job.spec && "suspend" in job.spec, false);
    assert.equal(job.spec?.template.metadata?.labels?.["kueue.x-k8s.io/queue-name"], undefined);
    assert.equal(queuedAndStopped(queued), false);
    const suspended = member((spec) => {
      spec.contribution.queueName = "gpu-team";
      spec.suspend = true;
    });
    assert.equal(queuedAndStopped(suspended), true, "suspending deletes the queued Job");
    // Without a queue the operator owns suspend, as before.
    assert.equal(desiredJob(member(), settings, "hash").spec?.suspend, false);
  });

  test("the Job requests the GPUs, runs restricted, and mounts config, key and credentials", () => {
    const tf = member((s) => {
      s.contribution.gpusPerReplica = 2;
      s.contribution.gpuResourceName = "amd.com/gpu";
      s.contribution.resources = { requests: { cpu: "2" }, limits: { memory: "8Gi" } };
      s.contribution.nodeSelector = { pool: "gpu" };
      s.contribution.priorityClassName = "low";
      s.transport = { natsUrls: ["tls://n:4222"], credentialsSecretRef: { name: "creds" } };
    });
    const job = desiredJob(tf, settings, "c0ffee");
    assert.equal(job.spec?.completionMode, "Indexed");
    assert.equal(job.spec?.completions, 2);
    assert.equal(job.spec?.parallelism, 2);
    assert.equal(job.spec?.suspend, false);
    assert.equal(job.metadata?.ownerReferences?.[0]?.uid, "uid-1");
    const pod = job.spec?.template.spec;
    const container = pod?.containers[0];
    assert.deepEqual(container?.resources, {
      limits: { memory: "8Gi", "amd.com/gpu": "2" },
      requests: { cpu: "2" },
    });
    assert.equal(container?.image, settings.trainerImage);
    assert.deepEqual(pod?.nodeSelector, { pool: "gpu" });
    assert.equal(pod?.priorityClassName, "low");
    assert.equal(pod?.restartPolicy, "Never");
    assert.equal(pod?.securityContext?.runAsNonRoot, true);
    assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
    const mounts = Object.fromEntries(
      (container?.volumeMounts ?? []).map((m) => [m.name, m.mountPath]),
    );
    assert.equal(mounts.config, "/etc/fedtrain/config");
    assert.equal(mounts["member-key"], "/etc/fedtrain/member-key");
    assert.equal(mounts["nats-credentials"], "/etc/fedtrain/nats");
    const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env.FEDTRAIN_METRICS_ADDRESS, "$(POD_IP):9090");
  });

  test("the leave Job runs `leave` like a trainer runs, without GPUs, and goes with its owner", () => {
    const tf = member((s) => {
      s.contribution.image = "registry.example/trainer:1";
      s.contribution.serviceAccountName = "trainers";
      s.contribution.nodeSelector = { pool: "gpu" };
      s.contribution.dataVolumeClaim = "corpus";
      s.transport = {
        natsUrls: ["tls://n:4222"],
        credentialsSecretRef: { name: "creds" },
        tlsSecretRef: { name: "tls" },
      };
    });
    const leave = desiredLeaveJob(tf, settings);
    const trainers = desiredJob(tf, settings, "h");
    assert.equal(leave.metadata?.name, "m-leave");
    assert.equal(leave.metadata?.ownerReferences?.[0]?.uid, "uid-1");
    assert.equal(leave.metadata?.labels?.["fedtrain.dev/instance"], "m");
    assert.equal(leave.metadata?.labels?.["app.kubernetes.io/managed-by"], "fedtrain-operator");
    assert.ok((leave.spec?.backoffLimit ?? 0) > 0, "retries a NATS hiccup");
    assert.ok(leave.spec?.activeDeadlineSeconds, "bounded");
    const pod = leave.spec?.template.spec;
    const container = pod?.containers[0];
    assert.deepEqual(container?.args, ["leave", "--config=/etc/fedtrain/config/trainer.json"]);
    assert.equal(container?.image, "registry.example/trainer:1");
    assert.equal(container?.resources, undefined, "no GPU");
    assert.equal(container?.readinessProbe, undefined);
    const trainerPod = trainers.spec?.template.spec;
    const trainer = trainerPod?.containers[0];
    assert.equal(pod?.serviceAccountName, "trainers");
    assert.deepEqual(pod?.nodeSelector, trainerPod?.nodeSelector);
    assert.deepEqual(pod?.securityContext, trainerPod?.securityContext);
    assert.equal(pod?.automountServiceAccountToken, false);
    assert.deepEqual(container?.securityContext, trainer?.securityContext);
    // The trainers' config, key and NATS files at the same paths; not their training data.
    assert.deepEqual(
      container?.volumeMounts,
      trainer?.volumeMounts?.filter((m) => m.name !== "data"),
    );
    assert.deepEqual(
      pod?.volumes,
      trainerPod?.volumes?.filter((v) => v.name !== "data"),
    );
    assert.deepEqual(
      pod?.volumes?.find((v) => v.name === "member-key")?.secret?.secretName,
      "m-member-key",
    );
  });

  test("no GPUs means no GPU request", () => {
    const job = desiredJob(
      member((s) => (s.contribution.gpusPerReplica = 0)),
      settings,
      "h",
    );
    assert.deepEqual(job.spec?.template.spec?.containers[0]?.resources, {});
  });

  test("suspend, and zero replicas, suspend the Job instead of completing it", () => {
    const suspended = desiredJob(
      member((s) => (s.suspend = true)),
      settings,
      "h",
    );
    assert.equal(suspended.spec?.suspend, true);
    const none = desiredJob(
      member((s) => (s.contribution.replicas = 0)),
      settings,
      "h",
    );
    assert.equal(none.spec?.suspend, true);
    assert.equal(none.spec?.completions, 1);
  });

  test("scaling changes neither the pod template nor the configuration", () => {
    const two = member();
    const three = member((s) => (s.contribution.replicas = 3));
    const config = (tf: TrainingFederation) => desiredConfigMap(tf, settings, publicKey);
    assert.equal(config(two).data?.["trainer.json"], config(three).data?.["trainer.json"]);
    const hash = (tf: TrainingFederation) =>
      desiredJob(tf, settings, "h").metadata?.annotations?.[templateHashAnnotation];
    assert.equal(hash(two), hash(three));
    const applied = (tf: TrainingFederation) =>
      desiredJob(tf, settings, "h").metadata?.annotations?.[appliedHashAnnotation];
    assert.notEqual(applied(two), applied(three));
  });

  test("a new image changes the pod template", () => {
    const hash = (tf: TrainingFederation) =>
      desiredJob(tf, settings, "h").metadata?.annotations?.[templateHashAnnotation];
    assert.notEqual(hash(member()), hash(member((s) => (s.contribution.image = "other:1"))));
  });

  test("the rendered configuration carries the canonical federation, hash, member and transport", () => {
    const tf = member(
      (s) => (s.transport = { natsUrls: ["nats://a:4222"], tlsSecretRef: { name: "tls" } }),
    );
    const config = JSON.parse(
      desiredConfigMap(tf, settings, publicKey).data?.["trainer.json"] ?? "",
    );
    assert.equal(config.kind, "TrainerConfig");
    assert.equal(config.member.id, "alpine");
    assert.equal(config.member.publicKey, publicKey);
    assert.match(config.federationSpecHash, /^sha256:/);
    assert.deepEqual(config.transport.natsUrls, ["nats://a:4222"]);
    assert.equal(config.transport.tls.caFile, "/etc/fedtrain/nats-tls/ca.crt");
    assert.deepEqual(config.federation.model.mlp, { hiddenLayers: [128, 128], activation: "ReLU" });
  });
});

describe("the operator's defaults for the trainers", () => {
  const backends: [
    string,
    (s: Record<string, any>) => void,
    ChildSettings["defaultBackend"],
    string,
  ][] = [
    ["a member naming none takes the operator's default", () => {}, "CUDA", "CUDA"],
    ["Auto takes the operator's default", (s) => (s.contribution.backend = "Auto"), "CPU", "CPU"],
    ["a named backend wins", (s) => (s.contribution.backend = "WebGPU"), "CUDA", "WebGPU"],
    ["Auto stays Auto by default", () => {}, "Auto", "Auto"],
    [
      "a GPU default never reaches workers without GPUs",
      (s) => (s.contribution.gpusPerReplica = 0),
      "WebGPU",
      "Auto",
    ],
    ["a CPU default reaches them", (s) => (s.contribution.gpusPerReplica = 0), "CPU", "CPU"],
  ];
  for (const [name, change, defaultBackend, expected] of backends) {
    test(`backend: ${name}`, () => {
      const tf = member(change);
      const withDefault = { ...settings, defaultBackend };
      assert.equal(backendOf(tf, withDefault), expected);
      const config = JSON.parse(
        desiredConfigMap(tf, withDefault, publicKey).data?.["trainer.json"] ?? "",
      );
      assert.equal(config.backend, expected);
    });
  }

  test("the operator's NATS credentials and TLS Secrets, unless spec.transport names its own", () => {
    const withDefaults = {
      ...settings,
      natsCredentialsSecret: "op-creds",
      natsTlsSecret: "op-tls",
    };
    const secrets = (tf: TrainingFederation) =>
      Object.fromEntries(
        (desiredJob(tf, withDefaults, "h").spec?.template.spec?.volumes ?? []).map((v) => [
          v.name,
          v.secret?.secretName,
        ]),
      );
    const config = (tf: TrainingFederation) =>
      JSON.parse(desiredConfigMap(tf, withDefaults, publicKey).data?.["trainer.json"] ?? "");

    const plain = member();
    assert.equal(secrets(plain)["nats-credentials"], "op-creds");
    assert.equal(secrets(plain)["nats-tls"], "op-tls");
    assert.deepEqual(config(plain).transport, {
      natsUrls: ["nats://nats:4222"],
      credentialsFile: "/etc/fedtrain/nats/nats.creds",
      tls: {
        caFile: "/etc/fedtrain/nats-tls/ca.crt",
        certFile: "/etc/fedtrain/nats-tls/tls.crt",
        keyFile: "/etc/fedtrain/nats-tls/tls.key",
      },
    });

    const own = member(
      (s) =>
        (s.transport = {
          natsUrls: ["tls://n:4222"],
          credentialsSecretRef: { name: "my-creds" },
          tlsSecretRef: { name: "my-tls" },
        }),
    );
    assert.equal(secrets(own)["nats-credentials"], "my-creds");
    assert.equal(secrets(own)["nats-tls"], "my-tls");

    const none = desiredJob(plain, settings, "h").spec?.template.spec?.volumes ?? [];
    assert.deepEqual(
      none.map((v) => v.name),
      ["config", "member-key", "scratch"],
    );
    assert.deepEqual(
      JSON.parse(desiredConfigMap(plain, settings, publicKey).data?.["trainer.json"] ?? "")
        .transport,
      { natsUrls: ["nats://nats:4222"] },
    );
  });
});

/** `tf` with the given annotations. */
function annotated(
  tf: TrainingFederation,
  annotations: Record<string, string>,
): TrainingFederation {
  return { ...tf, metadata: { ...tf.metadata, annotations } };
}

describe("the poisoning drill annotation", () => {
  const rendered = (tf: TrainingFederation) =>
    JSON.parse(desiredConfigMap(tf, settings, publicKey).data?.["trainer.json"] ?? "");

  test("renders fedtrain.dev/drill-poison-scale into trainer.json's drill", () => {
    const tf = annotated(member(), { "fedtrain.dev/drill-poison-scale": "-10" });
    assert.deepEqual(rendered(tf).drill, { poisonScale: -10 });
    assert.deepEqual(semanticErrors(tf, settings), []);
  });

  test("leaves spec.federation and its hash alone, and is absent without the annotation", () => {
    const plain = member();
    const drilled = annotated(plain, { "fedtrain.dev/drill-poison-scale": " 2.5 " });
    assert.equal(rendered(plain).drill, undefined);
    assert.deepEqual(rendered(drilled).drill, { poisonScale: 2.5 });
    assert.deepEqual(rendered(drilled).federation, rendered(plain).federation);
    assert.equal(rendered(drilled).federationSpecHash, rendered(plain).federationSpecHash);
    assert.equal(rendered(drilled).federationSpecHash, federationSpecHash(plain.spec.federation));
    // The drill restarts the trainers (they read the configuration once), like any new config.
    assert.notEqual(
      desiredConfigMap(drilled, settings, publicKey).metadata?.annotations?.[appliedHashAnnotation],
      desiredConfigMap(plain, settings, publicKey).metadata?.annotations?.[appliedHashAnnotation],
    );
  });

  for (const value of ["", "ten", "NaN", "Infinity", "-10x"]) {
    test(`rejects ${JSON.stringify(value)} with a message naming the annotation`, () => {
      const tf = annotated(member(), { "fedtrain.dev/drill-poison-scale": value });
      const errors = semanticErrors(tf, settings);
      assert.equal(errors.length, 1, String(errors));
      assert.match(
        errors[0] ?? "",
        /annotation fedtrain\.dev\/drill-poison-scale: .* is not a number/,
      );
      assert.equal(rendered(tf).drill, undefined);
    });
  }
});

describe("a member's own data", () => {
  const rendered = (tf: TrainingFederation) =>
    JSON.parse(desiredConfigMap(tf, settings, publicKey).data?.["trainer.json"] ?? "");
  const onText = (localData?: Record<string, string>) =>
    member((s) => {
      s.federation.model = { preset: "CharTransformer" };
      s.federation.data = { synthetic: { preset: "Arithmetic", trainExamples: 50 } };
      s.contribution.dataVolumeClaim = "own-data";
      if (localData) s.contribution.localData = localData;
    });

  test("renders contribution.localData into trainer.json, outside the federation and its hash", () => {
    const own = onText({ format: "JSONL", path: "lab/notes.jsonl", field: "body" });
    const shared = onText();
    assert.deepEqual(rendered(own).localData, {
      format: "JSONL",
      path: "lab/notes.jsonl",
      field: "body",
    });
    assert.equal(rendered(own).dataDir, "/data");
    assert.equal(rendered(shared).localData, undefined);
    assert.equal(rendered(own).federationSpecHash, rendered(shared).federationSpecHash);
    // What the trainer checks it against: the rendering passes.
    assert.deepEqual(checkTrainerConfig(rendered(own)).localData, rendered(own).localData);
  });

  test("needs no share of the federation's examples", () => {
    assert.match(semanticErrors(onText(), settings)[0] ?? "", /would get about 25/);
    assert.deepEqual(semanticErrors(onText({ format: "Text", path: "notes.txt" }), settings), []);
  });
});

describe("semantic validation", () => {
  const cases: [string, (s: Record<string, any>) => void, Partial<ChildSettings>, RegExp][] = [
    ["no member id anywhere", () => {}, { clusterId: undefined }, /no member id/],
    ["no NATS URL anywhere", () => {}, { natsUrls: [] }, /no NATS URL/],
    ["no image anywhere", () => {}, { trainerImage: "" }, /no trainer image/],
    [
      "shards smaller than a batch",
      (s) => (s.federation.data.synthetic.trainExamples = 50),
      {},
      /workers would get about 25 training examples, fewer than one batch of 32/,
    ],
  ];
  for (const [name, change, overrides, message] of cases) {
    test(name, () => {
      const errors = semanticErrors(member(change), { ...settings, ...overrides });
      assert.equal(errors.length, 1, String(errors));
      assert.match(errors[0] ?? "", message);
    });
  }

  test("a valid member has none", () => {
    assert.deepEqual(semanticErrors(member(), settings), []);
  });

  test("an allowlist entry with another key than the member's is an error", () => {
    const tf = member((s) => {
      s.federation.membership = {
        policy: "Allowlist",
        members: [{ id: "alpine", publicKey: `${"Z".repeat(43)}=` }],
      };
    });
    tf.status = { publicKey };
    assert.match(semanticErrors(tf, settings)[0] ?? "", /different public key/);
  });
});
