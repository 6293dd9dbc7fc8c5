import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { crdPath } from "../../scripts/repository.js";

const crd = parse(readFileSync(crdPath, "utf8"));
const version = crd.spec.versions[0];
const root = version.schema.openAPIV3Schema;

type Schema = Record<string, unknown> & {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  description?: string;
  "x-kubernetes-validations"?: { rule: string; message?: string; fieldPath?: string }[];
  "x-kubernetes-list-type"?: string;
  "x-kubernetes-list-map-keys"?: string[];
};

/** Visits every schema node below `node` with its path (`spec.federation.model`). */
function walk(node: Schema, at: string, visit: (node: Schema, at: string) => void): void {
  visit(node, at);
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    walk(child, at ? `${at}.${key}` : key, visit);
  }
  if (node.items) walk(node.items, `${at}[]`, visit);
  if (typeof node.additionalProperties === "object") {
    walk(node.additionalProperties, `${at}{}`, visit);
  }
}

describe("TrainingFederation CRD", () => {
  test("is a v1 CRD with the agreed names", () => {
    assert.equal(crd.apiVersion, "apiextensions.k8s.io/v1");
    assert.equal(crd.kind, "CustomResourceDefinition");
    assert.equal(crd.metadata.name, "trainingfederations.fedtrain.dev");
    assert.equal(crd.spec.group, "fedtrain.dev");
    assert.equal(crd.spec.scope, "Namespaced");
    assert.deepEqual(crd.spec.names, {
      kind: "TrainingFederation",
      listKind: "TrainingFederationList",
      plural: "trainingfederations",
      singular: "trainingfederation",
      shortNames: ["tfed"],
      categories: ["fedtrain"],
    });
    assert.equal(crd.spec.versions.length, 1);
    assert.equal(version.name, "v1alpha1");
    assert.equal(version.served, true);
    assert.equal(version.storage, true);
    assert.deepEqual(version.subresources, { status: {} });
  });

  test("printer columns show progress, members, trainers, loss, Ready by type, and age", () => {
    const columns = new Map<string, { jsonPath: string; type: string }>(
      version.additionalPrinterColumns.map(
        (c: { name: string; jsonPath: string; type: string }) => [c.name, c],
      ),
    );
    assert.equal(columns.get("Round")?.jsonPath, ".status.progress");
    assert.equal(columns.get("Members")?.jsonPath, ".status.activeMembers");
    assert.equal(columns.get("Trainers")?.jsonPath, ".status.trainersReady");
    assert.equal(columns.get("Eval-Loss")?.jsonPath, ".status.evalLoss");
    assert.equal(columns.get("Ready")?.jsonPath, '.status.conditions[?(@.type=="Ready")].status');
    assert.equal(columns.get("Age")?.jsonPath, ".metadata.creationTimestamp");
    for (const column of columns.values()) {
      const target = column.jsonPath
        .replace(/\[\?.*$/, "")
        .split(".")
        .slice(1);
      if (target[0] === "metadata") continue;
      let node: Schema | undefined = root;
      for (const segment of target) node = node?.properties?.[segment];
      assert.ok(node, `printer column ${column.jsonPath} points at no field`);
    }
  });

  test("is structural: every field has a type, no node mixes properties and additionalProperties", () => {
    walk(root, "", (node, at) => {
      if (node["x-kubernetes-int-or-string"] === true) {
        assert.deepEqual(node.anyOf, [{ type: "integer" }, { type: "string" }], at);
        return;
      }
      assert.ok(typeof node.type === "string", `${at || "<root>"} has no type`);
      assert.ok(
        !(node.properties && node.additionalProperties !== undefined),
        `${at} has both properties and additionalProperties`,
      );
    });
  });

  test("every spec and status field has a description", () => {
    const missing: string[] = [];
    for (const part of ["spec", "status"]) {
      walk(root.properties[part], part, (node, at) => {
        if (at.endsWith("{}")) return; // map values are described by their map
        if (at.endsWith("[]") && node.type !== "object") return; // scalar list items: by the list
        if (typeof node.description !== "string" || node.description.trim().length < 8) {
          missing.push(at);
        }
      });
    }
    assert.deepEqual(missing, []);
  });

  test("has at least 10 CEL rules, each with a message and a valid fieldPath", () => {
    let rules = 0;
    walk(root, "", (node, at) => {
      for (const rule of node["x-kubernetes-validations"] ?? []) {
        rules += 1;
        assert.ok(rule.message && rule.message.length > 10, `${at}: rule without message`);
        if (rule.fieldPath) {
          let target: Schema | undefined = node;
          for (const segment of rule.fieldPath.split(".").slice(1)) {
            target = target?.properties?.[segment];
          }
          assert.ok(target, `${at}: fieldPath ${rule.fieldPath} names no field`);
        }
      }
    });
    assert.ok(rules >= 10, `only ${rules} CEL rules`);
  });

  test("list-map keys are required in their items, and every list says its list type", () => {
    walk(root, "", (node, at) => {
      if (node.type !== "array") return;
      assert.ok(node["x-kubernetes-list-type"], `${at} has no x-kubernetes-list-type`);
      for (const key of node["x-kubernetes-list-map-keys"] ?? []) {
        assert.ok(node.items?.required?.includes(key), `${at}: map key ${key} not required`);
      }
    });
  });
});
