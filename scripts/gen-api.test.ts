import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import {
  crdPath,
  referencePath,
  renderApiModules,
  schemaModulePath,
  typesModulePath,
} from "./gen-api.js";

test("the generated API types, schema and reference match the CRD (run `npm run gen:api` if not)", async () => {
  const rendered = await renderApiModules(await readFile(crdPath, "utf8"));
  assert.equal(await readFile(schemaModulePath, "utf8"), rendered.schema, "schema.generated.ts");
  assert.equal(await readFile(typesModulePath, "utf8"), rendered.types, "types.generated.ts");
  assert.equal(await readFile(referencePath, "utf8"), rendered.reference, "docs/api.md");
});

test("a changed CRD changes the generated types", async () => {
  const crd = await readFile(crdPath, "utf8");
  const original = await renderApiModules(crd);
  const changed = await renderApiModules(
    crd.replace("description: Outer learning rate.", "description: Changed."),
  );
  assert.notEqual(changed.types, original.types);
  assert.match(changed.types, /Changed\./);
});
