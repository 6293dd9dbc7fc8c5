// The training library stays a library: nothing in training/ imports the program around it
// (process/), NATS, the logger or the metrics server, so benchmarks and tests load it alone.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { describe, it } from "node:test";

const dir = new URL("./", import.meta.url);
const forbidden = /^(\.\.\/process\/|@nats-io\/|pino$|prom-client$|node:http$|@kubernetes\/)/;

describe("the training library", async () => {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".js") && !f.endsWith(".test.js"));
  it("has modules to check", () => assert.ok(files.length > 10, files.join(", ")));
  for (const file of files)
    it(`${file} imports nothing of the trainer process`, async () => {
      const text = await readFile(new URL(file, dir), "utf8");
      const specifiers = [
        ...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/g),
      ];
      assert.deepEqual(
        specifiers.map((m) => m[1]!).filter((s) => forbidden.test(s)),
        [],
      );
    });
});
