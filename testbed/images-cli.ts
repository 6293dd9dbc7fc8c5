// `npm run images`: builds the test bed's container images (the operator and the trainer from the
// repository's Dockerfiles, on a local Debian + Node.js base, and the pods' pause image) and
// prints where their OCI archives are. Cached: a second run with nothing changed takes seconds.
import { buildImages, ContainerToolError } from "./container-images.js";
import { formatDuration } from "./provision.js";

const started = Date.now();
try {
  const images = await buildImages();
  console.log(`\nimages ready in ${formatDuration(Date.now() - started)}:`);
  for (const image of [images.operator, images.trainer, images.pause]) {
    console.log(`  ${image.reference}  ${image.archive}`);
  }
} catch (error) {
  if (!(error instanceof ContainerToolError)) throw error;
  console.error(`npm run images: ${error.message}`);
  process.exitCode = 1;
}
