// End-to-end runs of the trainer process (dist/trainer-image/process/main.js) as a child process: two
// local workers on a tiny MLP on the WASM backend.
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
} from "../../core/api/index.js";
import { scratchDirectory } from "../../test/fixtures/scratch.js";
import { trainerConfigFile } from "../../test/fixtures/trainer-config.js";
import { TrainerProcess } from "../../test/fixtures/trainer-process.js";
import { readCheckpoint } from "../training/checkpoint.js";
import { parameterLayout } from "../training/model.js";
import { parseSafetensors, readF32 } from "../training/safetensors.js";

function tinyFederation(rounds: number): FederationSpec {
  return canonicalFederation({
    id: "tiny",
    model: { preset: "MLP", mlp: { hiddenLayers: [16], activation: "ReLU" } },
    data: {
      synthetic: {
        preset: "GaussianClusters",
        trainExamples: 400,
        evalExamples: 100,
        features: 8,
        classes: 4,
        noise: 1,
      },
    },
    training: { rounds, innerSteps: 5, batchSize: 16 },
    sync: { compression: { method: "Int8" } },
  } as FederationSpec);
}

async function writeConfig(directory: string, rounds: number, hash?: string): Promise<string> {
  const federation = tinyFederation(rounds);
  const path = join(directory, `trainer-${rounds}.json`);
  const config = trainerConfigFile(federation, {
    ...(hash === undefined ? {} : { federationSpecHash: hash }),
    backend: "CPU",
    dataDir: directory,
  });
  await writeFile(path, JSON.stringify(config));
  return path;
}

/** A trainer whose metrics address comes from the command line only. */
function startTrainer(args: string[]): TrainerProcess {
  return new TrainerProcess(args, { FEDTRAIN_METRICS_ADDRESS: undefined });
}

function runArgs(config: string, checkpoints: string): string[] {
  return [
    "--config",
    config,
    "--workers",
    "2",
    "--backend",
    "WASM",
    "--checkpoint-dir",
    checkpoints,
    "--metrics-address",
    "127.0.0.1:0",
  ];
}

/** The value of one sample of a Prometheus text exposition. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no sample ${series} in\n${text}`);
  return Number(line.slice(series.length + 1));
}

describe("trainer process", () => {
  const scratch = scratchDirectory("fedtrain-trainer-");

  it("runs two local workers to the last round, checkpoints, and exports", {
    timeout: 30_000,
  }, async () => {
    const checkpoints = join(scratch.path, "complete");
    const trainer = startTrainer(runArgs(await writeConfig(scratch.path, 4), checkpoints));
    assert.equal(await trainer.exited, 0, trainer.stderr);
    const rounds = trainer.lines.filter((l) => l.msg === "round applied").map((l) => l.round);
    assert.deepEqual(rounds, [0, 1, 2, 3]);
    const backend = trainer.lines.find((l) => l.msg?.startsWith("computing on"));
    assert.equal(backend?.backend, "wasm");
    const done = trainer.lines.find((l) => l.msg === "training completed");
    assert.equal(done?.rounds, 4);
    const checkpoint = await readCheckpoint(done?.checkpoint as string);
    assert.equal(checkpoint.rounds, 4);
    assert.equal(checkpoint.member, "alpha");
    assert.equal(checkpoint.federationSpecHash, federationSpecHash(tinyFederation(4)));

    const out = join(scratch.path, "export");
    const exporter = startTrainer([
      "export",
      "--checkpoint",
      done?.checkpoint as string,
      "--out",
      out,
    ]);
    assert.equal(await exporter.exited, 0, exporter.stderr);
    assert.deepEqual((await readdir(out)).sort(), [
      "model.json",
      "model.safetensors",
      "weights.bin",
    ]);
    const layout = parameterLayout(checkpoint.definition);
    const safetensors = parseSafetensors(
      new Uint8Array(await readFile(join(out, "model.safetensors"))),
    );
    const modelJson = JSON.parse(await readFile(join(out, "model.json"), "utf8"));
    const weights = await readFile(join(out, "weights.bin"));
    const decoded = tf.io.decodeWeights(
      weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
      modelJson.weightsManifest[0].weights,
    );
    for (const spec of layout) {
      const expected = checkpoint.global.slice(spec.offset, spec.offset + spec.size);
      assert.deepEqual(readF32(safetensors, spec.name), expected);
      assert.deepEqual(decoded[spec.name]!.dataSync(), expected);
    }
  });

  it("serves probes and metrics, stops on SIGTERM with a checkpoint, and resumes from it", {
    timeout: 30_000,
  }, async () => {
    const checkpoints = join(scratch.path, "stopped");
    const config = await writeConfig(scratch.path, 100_000);
    const trainer = startTrainer(runArgs(config, checkpoints));
    const port = await trainer.port();
    await trainer.waitFor((l) => l.msg === "round applied" && (l.round as number) >= 2);
    const base = `http://127.0.0.1:${port}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const worker of ["0", "1"]) {
      const w = `{worker="${worker}"}`;
      assert.ok(sample(metrics, `fedtrain_trainer_round${w}`) >= 2);
      assert.ok(sample(metrics, `fedtrain_trainer_inner_step${w}`) >= 10);
      assert.ok(sample(metrics, `fedtrain_trainer_bytes_sent_total${w}`) > 0);
      assert.ok(sample(metrics, `fedtrain_trainer_bytes_received_total${w}`) > 0);
      assert.ok(sample(metrics, `fedtrain_trainer_samples_per_second${w}`) > 0);
      // Int8 sends about a quarter of fp32's bytes.
      assert.ok(sample(metrics, `fedtrain_trainer_compression_ratio${w}`) > 3);
      assert.ok(Number.isFinite(sample(metrics, `fedtrain_trainer_loss${w}`)));
      assert.ok(Number.isFinite(sample(metrics, `fedtrain_trainer_eval_loss${w}`)));
    }
    assert.match(
      metrics,
      /^fedtrain_trainer_info\{backend="wasm",device="[^"]+",member="alpha",worker="1"\} 1$/m,
    );

    trainer.child.kill("SIGTERM");
    // Stopped before the last round: 128 + SIGTERM, so that a Job does not count it complete.
    assert.equal(await trainer.exited, 143, trainer.stderr);
    const stopped = trainer.lines.find((l) => l.msg === "training stopped");
    assert.ok(stopped, "logs that it stopped");
    const checkpoint = await readCheckpoint(stopped.checkpoint as string);
    assert.ok(checkpoint.rounds >= 3 && checkpoint.rounds < 100_000, `rounds ${checkpoint.rounds}`);

    const resumed = startTrainer(runArgs(config, checkpoints));
    const loaded = await resumed.waitFor((l) => l.msg === "model and data loaded");
    assert.equal(loaded.firstRound, checkpoint.rounds);
    // Each worker continues its own AdamW moments and schedule and its error feedback.
    assert.deepEqual(
      checkpoint.local.map((each) => each.state.innerStepCount),
      [0, 1].map(() => checkpoint.rounds * 5),
    );
    assert.deepEqual(
      resumed.lines.filter((l) => l.msg === "worker-local state restored").map((l) => l.worker),
      [0, 1],
    );
    await resumed.waitFor((l) => l.msg === "round applied");
    resumed.child.kill("SIGTERM");
    assert.equal(await resumed.exited, 143, resumed.stderr);
    const first = resumed.lines.find((l) => l.msg === "round applied");
    assert.equal(first?.round, checkpoint.rounds);
  });

  it("exits with code 2 and names the field on a configuration error", {
    timeout: 30_000,
  }, async () => {
    const config = await writeConfig(scratch.path, 4, `sha256:${"1".repeat(64)}`);
    const trainer = startTrainer(runArgs(config, join(scratch.path, "never")));
    assert.equal(await trainer.exited, 2);
    assert.match(trainer.stderr, /configuration error: .*federationSpecHash: .* does not match/);
  });
});
