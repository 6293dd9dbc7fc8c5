// Where a benchmark writes. A full run's result is the project's record and is committed under
// bench/results/; a --quick run is only a smoke test, so it goes to the git-ignored out/bench/
// and never shows up as a change to the record.
import path from "node:path";
import { repoRoot } from "../../scripts/repository.js";

/** The file a run of benchmark `name` writes with `extension` ("json", "png"). */
export function resultFile(name: string, extension: string, quick: boolean): string {
  return quick
    ? path.join(repoRoot, "out", "bench", `${name}-quick.${extension}`)
    : path.join(repoRoot, "bench", "results", `${name}.${extension}`);
}
