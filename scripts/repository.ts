// Where this repository's files are, for the tools and tests that read them (the CRD, examples,
// charts) or run its build output. This module is compiled to dist/scripts/, two levels below
// the root, so the root is found from here once instead of by counting ".." in every caller.
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root folder. */
export const repoRoot = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/** A path inside the repository, from its parts. */
export function repoPath(...parts: string[]): string {
  return path.join(repoRoot, ...parts);
}

/** A path inside the build output (dist/), from its parts. */
export function builtPath(...parts: string[]): string {
  return path.join(repoRoot, "dist", ...parts);
}

/** The CRD: the one schema of the API. */
export const crdPath = repoPath("crds", "trainingfederations.fedtrain.dev.yaml");
