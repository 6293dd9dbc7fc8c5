// Reading, patching and waiting on TrainingFederation objects in the integration tests.
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { group, plural, version } from "../../core/api/index.js";
import { waitFor } from "../../testbed/process.js";

/** A TrainingFederation as the tests read it (untyped, as it comes from the API). */
export type FederationObject = Record<string, any>;

/** The condition of a type in a status (an empty object when absent, so fields read undefined). */
export function condition(status: FederationObject, type: string): FederationObject {
  return (status.conditions ?? []).find((c: { type: string }) => c.type === type) ?? {};
}

/** TrainingFederations of one namespace. */
export class FederationObjects {
  constructor(
    private readonly objects: CustomObjectsApi,
    private readonly namespace: string,
  ) {}

  /** Reads one object. */
  async read(name: string): Promise<FederationObject> {
    const { namespace } = this;
    return (await this.objects.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name,
    })) as FederationObject;
  }

  /** Merge-patches the spec. */
  async patchSpec(name: string, spec: Record<string, unknown>): Promise<void> {
    const { namespace } = this;
    await this.objects.patchNamespacedCustomObject(
      { group, version, namespace, plural, name, body: { spec } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  /** Waits until the status, written for the object's current generation, satisfies check. */
  async waitStatus(
    name: string,
    what: string,
    check: (status: FederationObject) => boolean,
    timeoutMs = 60_000,
  ): Promise<FederationObject> {
    return waitFor(
      `${name}: ${what}`,
      async () => {
        const tf = await this.read(name);
        const status = tf.status ?? {};
        return status.observedGeneration === tf.metadata.generation && check(status)
          ? tf
          : undefined;
      },
      timeoutMs,
      200,
    );
  }

  /** Deletes an object and waits until it is gone (its finalizer done). */
  async deleteAndWait(name: string, timeoutMs = 60_000): Promise<void> {
    const { namespace } = this;
    await this.objects.deleteNamespacedCustomObject({ group, version, namespace, plural, name });
    await waitFor(
      `${name} to be gone`,
      async () => {
        try {
          await this.read(name);
          return undefined;
        } catch (error) {
          return (error as { code?: number }).code === 404 ? true : undefined;
        }
      },
      timeoutMs,
    );
  }
}
