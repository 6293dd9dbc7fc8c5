import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
} from "../../core/api/index.js";
import { DEFAULT_CHECKPOINT_DIR, parseCommand, UsageError } from "./cli.js";
import { checkTrainerConfig, loadTrainerConfig, TrainerConfigError } from "./trainer-config.js";

const federation = {
  id: "config-test",
  model: { preset: "MLP" },
  data: { synthetic: { preset: "GaussianClusters" } },
} as FederationSpec;

function validConfig(): Record<string, unknown> {
  return {
    apiVersion: "fedtrain.dev/v1alpha1",
    kind: "TrainerConfig",
    federation: canonicalFederation(federation),
    federationSpecHash: federationSpecHash(federation),
    member: { id: "alpha", publicKey: "", privateKeyFile: "/etc/fedtrain/member-key/private.pem" },
    transport: { natsUrls: ["nats://nats:4222"] },
    backend: "CPU",
    dataDir: "/data",
  };
}

describe("trainer config", () => {
  it("accepts the operator's rendering and a hand-written one without defaults", () => {
    const config = checkTrainerConfig(validConfig());
    assert.equal(
      config.federation.training.rounds,
      canonicalFederation(federation).training.rounds,
    );
    const handWritten = { ...validConfig(), federation, transport: undefined, backend: undefined };
    const loaded = checkTrainerConfig(handWritten);
    assert.deepEqual(loaded.federation, canonicalFederation(federation));
    assert.equal(loaded.backend, "Auto");
    assert.deepEqual(loaded.transport.natsUrls, []);
  });

  const invalid: [string, (c: Record<string, unknown>) => void, RegExp][] = [
    [
      "a hash of another spec",
      (c) => {
        c.federationSpecHash = `sha256:${"0".repeat(64)}`;
      },
      /federationSpecHash: "sha256:0+" does not match the federation spec, whose hash is sha256:[0-9a-f]{64}/,
    ],
    [
      "no hash",
      (c) => {
        delete c.federationSpecHash;
      },
      /federationSpecHash: Required value: this federation's hash is sha256:/,
    ],
    [
      "an invalid federation field",
      (c) => {
        (c.federation as FederationSpec).training.rounds = 0;
      },
      /the federation spec is invalid:\n {2}federation\.training\.rounds: must be >= 1/,
    ],
    [
      "an unknown federation field",
      (c) => {
        (c.federation as Record<string, unknown>).colour = "blue";
      },
      /federation\.colour: field not declared in schema/,
    ],
    [
      "an unknown preset",
      (c) => {
        (c.federation as { model: { preset: string } }).model.preset = "GPT";
      },
      /federation\.model\.preset: Unsupported value/,
    ],
    [
      "another kind",
      (c) => Object.assign(c, { kind: "TrainingFederation" }),
      /kind: must be TrainerConfig/,
    ],
    [
      "no member",
      (c) => {
        delete c.member;
      },
      /member: Required value/,
    ],
    [
      "a bad member id",
      (c) => Object.assign(c, { member: { id: "a b" } }),
      /member\.id: must be a name/,
    ],
    [
      "a bad backend",
      (c) => Object.assign(c, { backend: "TPU" }),
      /backend: Unsupported value "TPU"/,
    ],
    [
      "NATS URLs that are not a list",
      (c) => Object.assign(c, { transport: { natsUrls: "nats://x" } }),
      /transport\.natsUrls: must be a list/,
    ],
  ];
  for (const [name, mutate, message] of invalid) {
    it(`rejects ${name}`, () => {
      const config = validConfig();
      mutate(config);
      assert.throws(
        () => checkTrainerConfig(config, "trainer.json"),
        (error: unknown) => {
          assert.ok(error instanceof TrainerConfigError, String(error));
          assert.match(error.message, /^trainer\.json: /);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  }

  describe("files", () => {
    let directory: string;
    before(async () => {
      directory = await mkdtemp(join(tmpdir(), "fedtrain-config-"));
    });
    after(async () => {
      await rm(directory, { recursive: true, force: true });
    });

    it("reads YAML as well as JSON", async () => {
      const path = join(directory, "trainer.yaml");
      await writeFile(path, stringify(validConfig()));
      assert.equal((await loadTrainerConfig(path)).member.id, "alpha");
    });

    it("names a missing file and an unparseable one", async () => {
      await assert.rejects(
        loadTrainerConfig(join(directory, "absent.json")),
        (error: unknown) =>
          error instanceof TrainerConfigError && /absent\.json does not exist/.test(error.message),
      );
      const broken = join(directory, "broken.json");
      await writeFile(broken, "{ unclosed: [");
      await assert.rejects(loadTrainerConfig(broken), /broken\.json is neither JSON nor YAML/);
    });
  });
});

describe("command line", () => {
  const env = { JOB_COMPLETION_INDEX: "3", FEDTRAIN_METRICS_ADDRESS: "10.0.0.7:9090" };

  it("runs with only --config, as the operator starts it", () => {
    assert.deepEqual(parseCommand(["--config=/etc/fedtrain/config/trainer.json"], env), {
      command: "run",
      config: "/etc/fedtrain/config/trainer.json",
      workerIndex: 3,
      workers: 1,
      checkpointDir: DEFAULT_CHECKPOINT_DIR,
      metricsAddress: "10.0.0.7:9090",
      fresh: false,
      logLevel: "info",
    });
  });

  it("prefers flags to the environment", () => {
    const command = parseCommand(
      ["run", "--config", "c.json", "--worker-index", "5", "--backend", "webgpu"],
      env,
    );
    assert.equal(command.command === "run" && command.workerIndex, 5);
    assert.equal(command.command === "run" && command.backend, "WebGPU");
    const local = parseCommand(["--config", "c.json", "--workers", "4"], {});
    assert.equal(local.command === "run" && local.workers, 4);
    assert.equal(local.command === "run" && local.metricsAddress, "127.0.0.1:9090");
  });

  it("parses export", () => {
    assert.deepEqual(parseCommand(["export", "--checkpoint", "c", "--out", "o"], {}), {
      command: "export",
      checkpoint: "c",
      out: "o",
      format: "both",
    });
  });

  const wrong: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [[], {}, /run needs --config/],
    [["--config", "c", "--workers", "0"], {}, /--workers "0" must be an integer ≥ 1/],
    [["--config", "c", "--workers", "2", "--worker-index", "1"], {}, /exclude each other/],
    [["--config", "c"], { JOB_COMPLETION_INDEX: "x" }, /JOB_COMPLETION_INDEX "x"/],
    [["--config", "c", "--backend", "tpu"], {}, /--backend tpu: use one of/],
    [["--config", "c", "--colour"], {}, /Unknown option '--colour'/],
    [["train", "--config", "c"], {}, /unknown command train/],
    [["export", "--checkpoint", "c", "--out", "o", "--format", "onnx"], {}, /--format onnx/],
  ];
  for (const [argv, environment, message] of wrong) {
    it(`rejects ${argv.join(" ") || "no arguments"}`, () => {
      assert.throws(
        () => parseCommand(argv, environment),
        (error: unknown) => error instanceof UsageError && message.test(error.message),
      );
    });
  }
});
