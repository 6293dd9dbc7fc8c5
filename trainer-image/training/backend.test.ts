import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { BackendUnavailableError, backendInfo, initBackend } from "./backend.js";

describe("backend", () => {
  it("fails an explicit choice that cannot load with a message naming what is missing", async (t) => {
    let cudaLoads = true;
    try {
      await import("@tensorflow/tfjs-node-gpu" as string);
    } catch {
      cudaLoads = false;
    }
    if (cudaLoads) t.skip("tfjs-node-gpu is installed here");
    await assert.rejects(
      initBackend("CUDA", { log: () => {} }),
      (error: unknown) =>
        error instanceof BackendUnavailableError &&
        /@tensorflow\/tfjs-node-gpu/.test(error.message),
    );
  });

  it("fails WebGPU clearly when there is no GPU adapter", async (t) => {
    const probe = await initBackend("WebGPU", { log: () => {} }).catch((error: unknown) => error);
    if (!(probe instanceof Error)) {
      t.skip("this machine has a WebGPU adapter");
      return;
    }
    assert.ok(probe instanceof BackendUnavailableError);
    assert.match(probe.message, /backend WebGPU is not available: .*(adapter|libvulkan)/);
  });

  it("picks a backend that loads for Auto and reports it", async () => {
    const logs: string[] = [];
    const info = await initBackend("Auto", { log: (line) => logs.push(line) });
    assert.equal(backendInfo(), info);
    assert.equal(tf.getBackend(), info.tfjsBackend);
    assert.ok(info.device.length > 0);
    assert.ok(
      logs.some((line) => line.startsWith(`backend: ${info.backend}`)),
      logs.join("\n"),
    );
    const sum = await tf.add(tf.ones([2]), tf.ones([2])).data();
    assert.deepEqual(Array.from(sum), [2, 2]);
  });
});
