// The cluster admin's bounds on what a TrainingFederation may make the operator do (the chart's
// policy values, passed as flags): which trainer images it may run, which ServiceAccounts its
// pods may run as, and which PersistentVolumeClaims they may mount. Without them, whoever may
// create a TrainingFederation could have the operator run any image as any ServiceAccount with
// any volume: a confused deputy. A refused TrainingFederation gets no children, and its Valid
// condition says why (reason PolicyRefused). Secrets are bounded at admission instead, by the
// requester's own right to read them (the chart's ValidatingAdmissionPolicy), since the operator
// itself never reads a Secret.
import type { TrainingFederation } from "../../../core/api/index.js";

/** The admin's policy; see the file comment. */
export interface ChildPolicy {
  /**
   * Images a TrainingFederation may name in spec.contribution.image: each entry a repository
   * (any tag or digest of it), a prefix ending in "/" (any repository below it), or "*" (any
   * image). Empty: only the repository of the operator's own trainer image.
   */
  allowedImages: string[];
  /** ServiceAccounts trainer pods may run as besides the namespace's "default". */
  allowedServiceAccounts: string[];
  /** The label ("key=value") a PersistentVolumeClaim must carry to be mounted. */
  volumeClaimLabel: string;
}

/** The policy in force when no flag sets one. */
export const defaultPolicy: ChildPolicy = {
  allowedImages: [],
  allowedServiceAccounts: [],
  volumeClaimLabel: "fedtrain.dev/use=true",
};

/** The repository of an image reference: without its tag or digest. */
export function repositoryOf(image: string): string {
  const at = image.indexOf("@");
  const withoutDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = withoutDigest.lastIndexOf(":");
  return colon > withoutDigest.lastIndexOf("/") ? withoutDigest.slice(0, colon) : withoutDigest;
}

/** Whether the policy lets a TrainingFederation run image. */
export function imageAllowed(image: string, policy: ChildPolicy, trainerImage: string): boolean {
  const allowed = policy.allowedImages.length
    ? policy.allowedImages
    : trainerImage
      ? [repositoryOf(trainerImage)]
      : [];
  return allowed.some((entry) =>
    entry === "*"
      ? true
      : entry.endsWith("/")
        ? image.startsWith(entry)
        : repositoryOf(image) === entry,
  );
}

/**
 * What the policy refuses in tf, as messages naming the field and the admin's setting.
 * `volumeClaimLabels` are the labels of the claim spec.contribution.dataVolumeClaim names, or
 * null when it does not exist (undefined when none is named).
 */
export function policyProblems(
  tf: TrainingFederation,
  policy: ChildPolicy,
  trainerImage: string,
  volumeClaimLabels: Record<string, string> | null | undefined,
): string[] {
  const problems: string[] = [];
  const { contribution } = tf.spec;
  if (contribution.image && !imageAllowed(contribution.image, policy, trainerImage)) {
    const allowed = policy.allowedImages.length
      ? policy.allowedImages.join(", ")
      : `${repositoryOf(trainerImage)} (the operator's trainer image)`;
    problems.push(
      `spec.contribution.image ${contribution.image} is not allowed here: the cluster admin allows ${allowed} (chart value policy.allowedImages)`,
    );
  }
  const account = contribution.serviceAccountName;
  if (account && account !== "default" && !policy.allowedServiceAccounts.includes(account)) {
    problems.push(
      `spec.contribution.serviceAccountName ${account} is not allowed here: the cluster admin allows default${policy.allowedServiceAccounts.map((a) => `, ${a}`).join("")} (chart value policy.allowedServiceAccounts)`,
    );
  }
  const claim = contribution.dataVolumeClaim;
  if (claim) {
    const [key = "", value = ""] = policy.volumeClaimLabel.split("=");
    if (volumeClaimLabels === null)
      problems.push(`spec.contribution.dataVolumeClaim ${claim} does not exist in this namespace`);
    else if (volumeClaimLabels?.[key] !== value)
      problems.push(
        `spec.contribution.dataVolumeClaim ${claim} is not labelled ${policy.volumeClaimLabel}: a namespace admin labels a claim to let fedtrain trainers mount it`,
      );
  }
  return problems;
}
