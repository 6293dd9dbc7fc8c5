// The node agent runs containers as local processes, so an image must map to a local command.
// This is that map: an image reference (registry/repository, any tag or digest) to an entrypoint
// on this machine. fedtrain's own images map to this repository's built programs; two test images
// run the container's command on the host. Any other image fails its pod with reason UnknownImage.
import { builtPath, repoRoot } from "../scripts/repository.js";

/** What an image stands for on this machine. */
export interface LocalImage {
  /** The image's ENTRYPOINT, as a local command; empty when the container must give a command. */
  entrypoint: string[];
  /** Working directory of the process. */
  workingDir: string;
}

/** Repositories (without tag or digest) and what they map to; documented in the README. */
export const imageMap: Record<string, LocalImage> = {
  // The flag before the program is the one operator/Dockerfile's ENTRYPOINT gives.
  "ghcr.io/fedtrain/operator": {
    entrypoint: [process.execPath, "--optimize-for-size", builtPath("operator", "src", "main.js")],
    workingDir: repoRoot,
  },
  "ghcr.io/fedtrain/trainer": {
    entrypoint: [process.execPath, builtPath("trainer-image", "process", "main.js")],
    workingDir: repoRoot,
  },
  // Stands in for the trainer in the operator's integration tests (see the program's header).
  "testbed.local/stand-in-trainer": {
    entrypoint: [
      process.execPath,
      builtPath("test", "integration", "programs", "stand-in-trainer.js"),
    ],
    workingDir: repoRoot,
  },
  // Runs the container's command with the host's shell tools (sh, cat, sleep, ...).
  "testbed.local/shell": { entrypoint: [], workingDir: "/" },
  // Node.js (the project's pinned version) as the entrypoint: args name a script.
  "testbed.local/node": { entrypoint: [process.execPath], workingDir: repoRoot },
};

/** Strips the tag or digest: `ghcr.io/fedtrain/trainer:0.1.0` → `ghcr.io/fedtrain/trainer`. */
export function imageRepository(image: string): string {
  const withoutDigest = image.split("@")[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf("/");
  const lastColon = withoutDigest.lastIndexOf(":");
  return lastColon > lastSlash ? withoutDigest.slice(0, lastColon) : withoutDigest;
}

/** The local image an image reference maps to, or undefined when it is not in the map. */
export function localImage(image: string): LocalImage | undefined {
  return imageMap[imageRepository(image)];
}

/**
 * The argv of a container, as the container runtime builds it: `command` replaces the image's
 * entrypoint, `args` follow it.
 */
export function containerArgv(
  image: LocalImage,
  command: string[] | undefined,
  args: string[] | undefined,
): string[] {
  return [...(command?.length ? command : image.entrypoint), ...(args ?? [])];
}
