// Shared set-up of the integration tests: a private test bed per test file, in a temporary folder,
// brought down when the file's tests end.
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Testbed, type UpOptions } from "../../e2e/testbed/testbed.js";

/** The repository's root folder. */
export const repoRoot = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
);

/** Brings up a test bed of its own for one test file; call `down()` in an `after` hook. */
export async function startTestbed(options: Omit<UpOptions, "dir" | "log"> = {}): Promise<Testbed> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fedtrain-testbed-"));
  const verbose = process.env.FEDTRAIN_TEST_VERBOSE === "1";
  return Testbed.up({
    clusters: 1,
    ...options,
    dir,
    log: verbose ? (line) => console.error(line) : () => {},
  });
}
