// The demo's TrainingFederation for one member: the example federation's overlay, rendered by
// kubectl kustomize, with the demo's small schedule and the test bed's NATS patched in.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { TrainingFederation } from "../core/api/types.generated.js";
import { parseManifests } from "../testbed/apply.js";

const run = promisify(execFile);

/** The demo's schedule: small enough for three CPU trainers on a 2-core machine. */
export const demoSchedule = { rounds: 30, innerSteps: 30, batchSize: 32 } as const;

/** What the demo's data is, for the line that says what the model learned. */
export const demoDataNote =
  "single-digit sums and products: 200 possible problems, so a right answer is a fact learned, not arithmetic generalised";

/**
 * Renders examples/federation/overlays/<member> and patches it for the demo. The shared part
 * (spec.federation) is patched identically for every member, so their spec hashes agree.
 */
export async function demoFederation(
  kubectl: string,
  repoRoot: string,
  member: string,
  natsUrl: string,
): Promise<TrainingFederation> {
  const overlay = path.join(repoRoot, "examples", "federation", "overlays", member);
  const { stdout } = await run(kubectl, ["kustomize", overlay]);
  const [tf] = parseManifests(stdout) as unknown as TrainingFederation[];
  if (tf?.kind !== "TrainingFederation") {
    throw new Error(`kubectl kustomize ${overlay} rendered no TrainingFederation`);
  }
  const federation = tf.spec.federation;
  const synthetic = federation.data.synthetic;
  if (!synthetic) throw new Error(`${overlay}: the demo expects the base's synthetic data`);
  // A CPU-sized version of the base: a smaller model on single-digit problems, which three CPU
  // trainers learn in a couple of minutes (held-out answers from 0 % to about half right), with
  // the inner learning rate and outer optimiser that `npm run bench -- diloco-sweep` found best
  // for models of this size (plain averaging: outer Nesterov momentum overshoots at small H).
  synthetic.trainExamples = 3000;
  synthetic.evalExamples = 128;
  synthetic.maxOperand = 9;
  federation.model.charTransformer = {
    layers: 2,
    modelWidth: 32,
    heads: 4,
    contextLength: 16,
    feedForwardMultiplier: 4,
  };
  federation.training = {
    ...federation.training,
    ...demoSchedule,
    innerOptimizer: { ...federation.training.innerOptimizer, learningRate: 0.01, warmupSteps: 30 },
    outerOptimizer: { learningRate: 1, momentum: 0, nesterov: false },
  };
  federation.sync = { ...federation.sync, roundDeadlineSeconds: 60, checkpointEveryRounds: 5 };
  const contribution = tf.spec.contribution;
  contribution.replicas = 1;
  contribution.gpusPerReplica = 1;
  contribution.backend = "CPU";
  // The test bed's nodes carry no A100 label and the demo creates no PriorityClass.
  delete contribution.nodeSelector;
  delete contribution.priorityClassName;
  tf.spec.transport = { natsUrls: [natsUrl] };
  return tf;
}
