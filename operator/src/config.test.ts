import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, parseConfig, usage } from "./config.js";

describe("parseConfig", () => {
  test("defaults", () => {
    const config = parseConfig([], {});
    assert.equal(config.leaderElection, true);
    assert.equal(config.leaseName, "fedtrain-operator");
    assert.equal(config.metricsAddress, ":8080");
    assert.equal(config.probeAddress, ":8081");
    assert.deepEqual(config.namespaces, []);
    assert.equal(config.maxConcurrentReconciles, 8);
    assert.equal(config.resyncSeconds, 36000);
    assert.equal(config.clusterId, undefined);
  });

  test("environment, then flags over environment", () => {
    const env = {
      FEDTRAIN_CLUSTER_ID: "alpine",
      FEDTRAIN_NAMESPACES: "a, b",
      FEDTRAIN_LEADER_ELECT: "false",
    };
    const fromEnv = parseConfig([], env);
    assert.equal(fromEnv.clusterId, "alpine");
    assert.deepEqual(fromEnv.namespaces, ["a", "b"]);
    assert.equal(fromEnv.leaderElection, false);
    const fromFlags = parseConfig(["--cluster-id=birch", "--namespaces=c"], env);
    assert.equal(fromFlags.clusterId, "birch");
    assert.deepEqual(fromFlags.namespaces, ["c"]);
  });

  test("the operator's own NATS credentials file, from the environment or the flag", () => {
    assert.equal(parseConfig([], {}).natsCredentialsFile, undefined);
    const env = { FEDTRAIN_NATS_CREDENTIALS_FILE: "/etc/fedtrain/nats/nats.creds" };
    assert.equal(parseConfig([], env).natsCredentialsFile, "/etc/fedtrain/nats/nats.creds");
    assert.equal(
      parseConfig(["--nats-credentials-file=/tmp/op.creds"], env).natsCredentialsFile,
      "/tmp/op.creds",
    );
  });

  test("the default backend: Auto, else from the environment or the flag", () => {
    assert.equal(parseConfig([], {}).defaultBackend, "Auto");
    const env = { FEDTRAIN_DEFAULT_BACKEND: "CUDA" };
    assert.equal(parseConfig([], env).defaultBackend, "CUDA");
    assert.equal(parseConfig(["--default-backend=WebGPU"], env).defaultBackend, "WebGPU");
  });

  test("the default NATS TLS Secret: none, else from the environment or the flag", () => {
    assert.equal(parseConfig([], {}).natsTlsSecret, undefined);
    assert.equal(parseConfig([], { FEDTRAIN_NATS_TLS_SECRET: "" }).natsTlsSecret, undefined);
    const env = { FEDTRAIN_NATS_TLS_SECRET: "nats-tls" };
    assert.equal(parseConfig([], env).natsTlsSecret, "nats-tls");
    assert.equal(parseConfig(["--nats-tls-secret=other"], env).natsTlsSecret, "other");
  });

  const invalid: [string, string[], RegExp][] = [
    [
      "a cluster id that is not a DNS label",
      ["--cluster-id=Alpine_1"],
      /--cluster-id must be a DNS label/,
    ],
    ["leader-elect not a boolean", ["--leader-elect=yes"], /--leader-elect must be true or false/],
    [
      "an address without port",
      ["--metrics-bind-address=localhost"],
      /--metrics-bind-address must be host:port/,
    ],
    ["zero workers", ["--max-concurrent-reconciles=0"], /must be a positive whole number/],
    ["an http NATS URL", ["--nats-url=http://nats:4222"], /is not a nats:\/\//],
    ["an unknown log level", ["--log-level=trace"], /--log-level must be/],
    [
      "a backend the CRD does not know",
      ["--default-backend=cuda"],
      /--default-backend must be Auto, CUDA, WebGPU or CPU, got "cuda"/,
    ],
  ];
  for (const [name, argv, message] of invalid) {
    test(`refuses ${name}`, () => {
      assert.throws(
        () => parseConfig(argv, {}),
        (e: unknown) => e instanceof ConfigError && message.test(e.message),
      );
    });
  }

  test("refuses an unknown flag", () => {
    assert.throws(() => parseConfig(["--no-such-flag=1"], {}), /Unknown option/);
  });

  test("usage lists every flag with its environment variable", () => {
    assert.match(usage(), /--cluster-id\s+this cluster's id.*env FEDTRAIN_CLUSTER_ID/);
    assert.match(usage(), /--nats-url.*env FEDTRAIN_NATS_URL/);
    assert.match(usage(), /--default-backend.*\(default "Auto"\); env FEDTRAIN_DEFAULT_BACKEND/);
    assert.match(usage(), /--nats-tls-secret.*env FEDTRAIN_NATS_TLS_SECRET/);
  });
});
