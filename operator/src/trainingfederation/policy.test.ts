import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { natsUrlsAllowed } from "./federation.js";
import { defaultPolicy, imageAllowed, repositoryOf } from "./policy.js";

describe("the cluster admin's image policy", () => {
  test("repositoryOf strips a tag or digest, not a registry port", () => {
    assert.equal(repositoryOf("ghcr.io/fedtrain/trainer:0.1.0"), "ghcr.io/fedtrain/trainer");
    assert.equal(repositoryOf("registry:5000/trainer@sha256:abc"), "registry:5000/trainer");
    assert.equal(repositoryOf("registry:5000/trainer"), "registry:5000/trainer");
  });

  const trainer = "ghcr.io/fedtrain/trainer:0.1.0";
  const table: [string, string[], boolean][] = [
    ["ghcr.io/fedtrain/trainer:0.2.0", [], true],
    ["ghcr.io/fedtrain/trainer@sha256:00", [], true],
    ["ghcr.io/fedtrain/trainer-evil:1", [], false],
    ["docker.io/library/busybox:1", [], false],
    ["ghcr.io/fedtrain/trainer-evil:1", ["ghcr.io/fedtrain/"], true],
    ["ghcr.io/other/trainer:1", ["ghcr.io/fedtrain/"], false],
    ["registry.example/lab/trainer:7", ["registry.example/lab/trainer"], true],
    ["anything:1", ["*"], true],
  ];
  for (const [image, allowed, expected] of table)
    test(`${image} with ${JSON.stringify(allowed)}: ${expected ? "allowed" : "refused"}`, () => {
      assert.equal(
        imageAllowed(image, { ...defaultPolicy, allowedImages: allowed }, trainer),
        expected,
      );
    });
});

describe("the operator's own NATS connection", () => {
  const allowed = ["nats://nats.example:4222", "tls.example:4443"];
  const table: [string[], boolean][] = [
    [["nats://nats.example:4222"], true],
    [["tls://NATS.example:4222"], true],
    [["nats://user:pass@nats.example:4222"], true],
    [["wss://tls.example:4443/path"], true],
    [["nats://nats.example:4222", "nats://attacker.example:4222"], false],
    [["nats://nats.example:4223"], false],
    [[], false],
  ];
  for (const [urls, expected] of table)
    test(`${JSON.stringify(urls)}: ${expected ? "connects" : "refused"}`, () => {
      assert.equal(natsUrlsAllowed(urls, allowed), expected);
    });
});
