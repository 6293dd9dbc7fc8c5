// Shared set-up of the integration tests: a private test bed per test file, in a temporary folder,
// brought down when the file's tests end.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, afterEach } from "node:test";
import { Testbed, type UpOptions } from "../../testbed/testbed.js";

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

/**
 * A log file in the temp folder for a process this test file starts (with any `<file>.<suffix>`
 * siblings). The files are removed after the file's tests when every test ran and passed, and
 * kept, with their path printed, otherwise: they are what explains a failure.
 */
export function testLogFile(name: string): string {
  const file = path.join(os.tmpdir(), `fedtrain-${name}-${process.pid}.log`);
  let ran = 0;
  let failed = false;
  afterEach((t) => {
    ran++;
    if (!("passed" in t) || !t.passed) failed = true;
  });
  after(async () => {
    if (ran === 0 || failed) {
      console.error(`# logs kept: ${file}*`);
      return;
    }
    const base = path.basename(file);
    for (const entry of await readdir(os.tmpdir()))
      if (entry === base || entry.startsWith(`${base}.`))
        await rm(path.join(os.tmpdir(), entry), { force: true });
  });
  return file;
}
