import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { stringify } from "yaml";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
} from "../../core/api/index.js";
import { keyPairFromPrivate, toBase64 } from "../../core/protocol/index.js";
import { scratchDirectory } from "../../test/fixtures/scratch.js";
import { trainerConfigFile } from "../../test/fixtures/trainer-config.js";
import { DEFAULT_CHECKPOINT_DIR, parseCommand, UsageError } from "./cli.js";
import {
  checkNatsTransport,
  checkTrainerConfig,
  loadTrainerConfig,
  readMemberPrivateKey,
  TrainerConfigError,
} from "./trainer-config.js";

const federation = {
  id: "config-test",
  model: { preset: "MLP" },
  data: { synthetic: { preset: "GaussianClusters" } },
} as FederationSpec;

function validConfig(): Record<string, unknown> {
  return trainerConfigFile(canonicalFederation(federation), {
    member: { id: "alpha", publicKey: "", privateKeyFile: "/etc/fedtrain/member-key/private.pem" },
    transport: { natsUrls: ["nats://nats:4222"] },
    backend: "CPU",
    dataDir: "/data",
  });
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
    assert.equal(loaded.drill, undefined);
  });

  it("keeps a drill's poison scale", () => {
    const config = checkTrainerConfig({ ...validConfig(), drill: { poisonScale: -10 } });
    assert.deepEqual(config.drill, { poisonScale: -10 });
  });

  it("keeps a member's own data, for a federation of text data", () => {
    const text = {
      ...federation,
      model: { preset: "CharTransformer" },
      data: { synthetic: { preset: "Arithmetic" } },
    } as FederationSpec;
    const base = {
      ...validConfig(),
      federation: text,
      federationSpecHash: federationSpecHash(text),
    };
    assert.equal(checkTrainerConfig(base).localData, undefined);
    const config = checkTrainerConfig({
      ...base,
      localData: { format: "JSONL", path: "own/records.jsonl", field: "body" },
    });
    assert.deepEqual(config.localData, {
      format: "JSONL",
      path: "own/records.jsonl",
      field: "body",
    });
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
    ["a drill that is not an object", (c) => Object.assign(c, { drill: 3 }), /drill: must be/],
    [
      "a poison scale that is not a number",
      (c) => Object.assign(c, { drill: { poisonScale: "-10" } }),
      /drill\.poisonScale: must be a finite number, not "-10"/,
    ],
    [
      "local data of an unknown format",
      (c) => Object.assign(c, { localData: { format: "CSV", path: "own.csv" } }),
      /localData\.format: Unsupported value "CSV"/,
    ],
    [
      "local data outside the data directory",
      (c) => Object.assign(c, { localData: { format: "Text", path: "own/../../etc/passwd" } }),
      /localData\.path: must be a path relative to dataDir without '\.\.'/,
    ],
    [
      "local data at an absolute path",
      (c) => Object.assign(c, { localData: { format: "Text", path: "/etc/passwd" } }),
      /localData\.path: must be a path relative to dataDir/,
    ],
    [
      "a JSONL field for Text local data",
      (c) => Object.assign(c, { localData: { format: "Text", path: "own.txt", field: "text" } }),
      /localData\.field: only applies to the JSONL format/,
    ],
    [
      "local data for classification data",
      (c) => Object.assign(c, { localData: { format: "Text", path: "own.txt" } }),
      /localData: is text: it cannot stand in for the federation's GaussianClusters/,
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
    const scratch = scratchDirectory("fedtrain-config-");

    it("reads YAML as well as JSON", async () => {
      const path = join(scratch.path, "trainer.yaml");
      await writeFile(path, stringify(validConfig()));
      assert.equal((await loadTrainerConfig(path)).member.id, "alpha");
    });

    it("reads the member key from a PKCS #8 PEM and checks it against member.publicKey", async () => {
      const { privateKey } = generateKeyPairSync("ed25519");
      const pem = join(scratch.path, "private.pem");
      await writeFile(pem, privateKey.export({ format: "pem", type: "pkcs8" }));
      const config = checkTrainerConfig(validConfig());
      config.member.privateKeyFile = pem;
      const seed = await readMemberPrivateKey(config);
      assert.equal(seed.length, 32);
      const publicKey = toBase64(keyPairFromPrivate(seed).publicKey);
      const raw = privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32);
      assert.deepEqual(Buffer.from(seed), raw);
      config.member.publicKey = publicKey;
      assert.deepEqual(await readMemberPrivateKey(config), seed);

      const wrong = checkTrainerConfig(validConfig());
      wrong.member.privateKeyFile = pem;
      wrong.member.publicKey = toBase64(new Uint8Array(32));
      await assert.rejects(readMemberPrivateKey(wrong), /is not the public key of/);
      wrong.member.privateKeyFile = "";
      await assert.rejects(readMemberPrivateKey(wrong), /member\.privateKeyFile: Required value/);
      wrong.member.privateKeyFile = join(scratch.path, "absent.pem");
      await assert.rejects(readMemberPrivateKey(wrong), /cannot read .*absent\.pem/);
      const garbage = join(scratch.path, "garbage.pem");
      await writeFile(garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
      wrong.member.privateKeyFile = garbage;
      await assert.rejects(readMemberPrivateKey(wrong), /is not a PKCS #8 PEM Ed25519 private key/);
      const rsa = join(scratch.path, "rsa.pem");
      const rsaKey = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
      await writeFile(rsa, rsaKey.export({ format: "pem", type: "pkcs8" }));
      wrong.member.privateKeyFile = rsa;
      await assert.rejects(readMemberPrivateKey(wrong), /it is a rsa key, not Ed25519/);
    });

    it("checks what the NATS exchange needs from transport", async () => {
      const config = checkTrainerConfig(validConfig());
      await checkNatsTransport(config);
      config.transport = { natsUrls: [] };
      await assert.rejects(checkNatsTransport(config), /transport\.natsUrls: Required value/);
      config.transport = { natsUrls: ["nats://n:4222"], credentialsFile: join(scratch.path, "x") };
      await assert.rejects(checkNatsTransport(config), /transport\.credentialsFile: cannot read/);
      config.transport = {
        natsUrls: ["nats://n:4222"],
        tls: { caFile: join(scratch.path, "trainer.yaml"), certFile: "c.crt" },
      };
      await assert.rejects(checkNatsTransport(config), /certFile and keyFile go together/);
    });

    it("names a missing file and an unparseable one", async () => {
      await assert.rejects(
        loadTrainerConfig(join(scratch.path, "absent.json")),
        (error: unknown) =>
          error instanceof TrainerConfigError && /absent\.json does not exist/.test(error.message),
      );
      const broken = join(scratch.path, "broken.json");
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
      exchange: "auto",
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

  it("selects the exchange: --exchange wins, --workers means local, else auto", () => {
    const exchange = (argv: string[]) => {
      const command = parseCommand(["--config", "c.json", ...argv], {});
      return command.command === "run" ? command.exchange : undefined;
    };
    assert.equal(exchange([]), "auto");
    assert.equal(exchange(["--workers", "1"]), "local");
    assert.equal(exchange(["--workers", "3"]), "local");
    assert.equal(exchange(["--exchange", "NATS"]), "nats");
    assert.equal(exchange(["--exchange", "nats", "--workers", "1"]), "nats");
    assert.equal(exchange(["--exchange", "local"]), "local");
  });

  it("parses export", () => {
    assert.deepEqual(parseCommand(["export", "--checkpoint", "c", "--out", "o"], {}), {
      command: "export",
      checkpoint: "c",
      out: "o",
      format: "both",
    });
  });

  it("parses leave, as the operator's leave Job runs it", () => {
    assert.deepEqual(parseCommand(["leave", "--config=/etc/fedtrain/config/trainer.json"], env), {
      command: "leave",
      config: "/etc/fedtrain/config/trainer.json",
      logLevel: "info",
    });
  });

  const wrong: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [[], {}, /run needs --config/],
    [["leave"], {}, /leave needs --config/],
    [["--config", "c", "--workers", "0"], {}, /--workers "0" must be an integer ≥ 1/],
    [["--config", "c", "--workers", "2", "--worker-index", "1"], {}, /exclude each other/],
    [["--config", "c"], { JOB_COMPLETION_INDEX: "x" }, /JOB_COMPLETION_INDEX "x"/],
    [["--config", "c", "--backend", "tpu"], {}, /--backend tpu: use one of/],
    [["--config", "c", "--exchange", "grpc"], {}, /--exchange grpc: use one of auto, local, nats/],
    [["--config", "c", "--exchange", "nats", "--workers", "2"], {}, /one worker per process/],
    [["--config", "c", "--colour"], {}, /Unknown option '--colour'/],
    [["train", "--config", "c"], {}, /unknown command train: use run, leave or export/],
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
