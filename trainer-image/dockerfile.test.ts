// Lints trainer-image/Dockerfile (no Docker engine is needed): general rules on the parsed
// instructions (pinned base images, numeric non-root user, exec-form ENTRYPOINT, no remote ADD,
// apt lists cleaned) and what the trainer image needs (CUDA 11.2 base, Node 22, the Vulkan loader,
// tfjs-node-gpu's install script allowed, the operator's port and user).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { trainerMetricsPort } from "../core/api/trainer-config.js";
import { importClosure, importSpecifiers, packageName } from "../scripts/layout.js";
import { builtPath, repoPath } from "../scripts/repository.js";

/** One Dockerfile instruction, continuation lines joined. */
interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Splits a Dockerfile into instructions: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let current: { text: string; line: number } | null = null;
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && current === null)) return;
    const continued = line.endsWith("\\");
    const body = continued ? line.slice(0, -1).trim() : line;
    if (current) current.text += ` ${body}`;
    else current = { text: body, line: index + 1 };
    if (!continued) {
      const match = /^(\S+)\s*(.*)$/.exec(current.text.trim());
      if (match) {
        instructions.push({
          keyword: match[1]!.toUpperCase(),
          args: match[2]!,
          line: current.line,
        });
      }
      current = null;
    }
  });
  return instructions;
}

function execForm(args: string): string[] | null {
  try {
    const value: unknown = JSON.parse(args);
    return Array.isArray(value) && value.every((part) => typeof part === "string") ? value : null;
  } catch {
    return null;
  }
}

/** General Dockerfile rules; returns one message per violation. */
function dockerfileViolations(text: string): string[] {
  const instructions = parseDockerfile(text);
  const violations: string[] = [];
  const stages = new Set<string>();
  for (const { keyword, args, line } of instructions) {
    const at = `line ${line}`;
    switch (keyword) {
      case "FROM": {
        const parts = args.split(/\s+/).filter((part) => !part.startsWith("--"));
        const image = parts[0] ?? "";
        if (parts[1]?.toUpperCase() === "AS" && parts[2]) stages.add(parts[2].toLowerCase());
        if (stages.has(image.toLowerCase()) && parts[2]?.toLowerCase() !== image.toLowerCase())
          break;
        const tag = /:([^/:@]+)$/.exec(image.split("@")[0] ?? "")?.[1];
        if (image.includes("@sha256:")) break;
        if (!tag) violations.push(`${at}: FROM ${image} has no tag; pin a version`);
        else if (tag === "latest") violations.push(`${at}: FROM ${image} uses latest`);
        else if (!/\d/.test(tag))
          violations.push(`${at}: FROM ${image}: tag ${tag} is not a version`);
        break;
      }
      case "ADD":
        if (/(^|\s)https?:\/\//.test(args)) {
          violations.push(`${at}: ADD of a URL; download in a RUN step with a checksum`);
        }
        break;
      case "RUN":
        if (/apt-get\s+(-\S+\s+)*install/.test(args)) {
          if (!/--no-install-recommends/.test(args)) {
            violations.push(`${at}: apt-get install without --no-install-recommends`);
          }
          if (!/apt-get\s+update/.test(args)) {
            violations.push(`${at}: apt-get install without apt-get update in the same RUN`);
          }
          if (!/rm -rf \/var\/lib\/apt\/lists/.test(args)) {
            violations.push(`${at}: apt lists not removed (rm -rf /var/lib/apt/lists/*)`);
          }
        }
        if (/(^|[\s;&|])sudo\s/.test(args)) violations.push(`${at}: sudo in RUN`);
        break;
      case "ENTRYPOINT":
      case "CMD":
        if (!execForm(args))
          violations.push(`${at}: ${keyword} is not in exec form (a JSON array)`);
        break;
      case "HEALTHCHECK":
        if (args.trim().toUpperCase() !== "NONE") {
          const command = /^(?:--\S+\s+)*CMD\s+(.*)$/i.exec(args.trim())?.[1];
          if (!command || !execForm(command)) {
            violations.push(`${at}: HEALTHCHECK must be NONE or CMD in exec form`);
          }
        }
        break;
      case "ENV":
      case "ARG":
        if (/\b\w*(TOKEN|PASSWORD|SECRET|PRIVATE_KEY)\w*\s*=/i.test(args)) {
          violations.push(`${at}: ${keyword} sets a secret; mount it at run time instead`);
        }
        break;
    }
  }
  const users = instructions.filter((i) => i.keyword === "USER");
  const user = users[users.length - 1]?.args.trim();
  if (!user) violations.push("no USER: the image would run as root");
  else if (!/^\d+(:\d+)?$/.test(user)) violations.push(`USER ${user} is not a numeric uid[:gid]`);
  else if (user.split(":")[0] === "0") violations.push("USER 0 is root");
  if (!instructions.some((i) => i.keyword === "ENTRYPOINT")) violations.push("no ENTRYPOINT");
  return violations;
}

const dockerfile = readFileSync(repoPath("trainer-image", "Dockerfile"), "utf8");
const instructions = parseDockerfile(dockerfile);
const stagesOf = (all: Instruction[]) => {
  const stages: Instruction[][] = [];
  for (const instruction of all) {
    if (instruction.keyword === "FROM") stages.push([]);
    stages[stages.length - 1]?.push(instruction);
  }
  return stages;
};

describe("trainer-image/Dockerfile", () => {
  it("keeps the general rules", () => {
    assert.deepEqual(dockerfileViolations(dockerfile), []);
  });

  it("builds on Node.js 22 and runs on CUDA 11.2 + cuDNN 8 with the Vulkan loader", () => {
    const stages = stagesOf(instructions);
    assert.ok(stages.length >= 2, "multi-stage");
    assert.match(stages[0]![0]!.args, /^node:22\.\d+\.\d+-\S+ AS build$/);
    const runtime = stages[stages.length - 1]!;
    assert.equal(runtime[0]!.args, "nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04");
    const runtimeRuns = runtime.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(runtimeRuns.some((args) => /install .*\blibvulkan1\b/.test(args)));
    const copies = runtime.filter((i) => i.keyword === "COPY").map((i) => i.args);
    assert.ok(copies.includes("--from=build /usr/local/bin/node /usr/local/bin/node"));
    assert.ok(copies.some((args) => /dist\/trainer-image \.\/dist\/trainer-image$/.test(args)));
    assert.ok(copies.some((args) => /dist\/core \.\/dist\/core$/.test(args)));
    assert.ok(
      !copies.some((args) => /dist\/operator|\/src\/(core|trainer-image|operator)\b/.test(args)),
    );
  });

  it("lets npm 11 run exactly tfjs-node-gpu's install script, through package.json's allowScripts", () => {
    const install = instructions.find((i) => i.keyword === "RUN" && /\bnpm ci\b/.test(i.args));
    assert.ok(install, "npm ci");
    // npm 11 refuses --allow-scripts in a project (EALLOWSCRIPTS) and ignores an .npmrc setting
    // when package.json declares allowScripts, as ours does.
    assert.doesNotMatch(install.args, /--allow-scripts/);
    assert.match(
      install.args,
      /^npm pkg set 'allowScripts\[@tensorflow\/tfjs-node-gpu\]=true' --json && npm ci\b/,
    );
  });

  it("matches what the operator's pod expects", () => {
    const entrypoint = instructions.filter((i) => i.keyword === "ENTRYPOINT").pop()!;
    assert.deepEqual(execForm(entrypoint.args), [
      "node",
      "/app/dist/trainer-image/process/main.js",
    ]);
    // The operator runs trainers as the distroless "nonroot" user 65532.
    assert.equal(instructions.filter((i) => i.keyword === "USER").pop()?.args, "65532:65532");
    assert.ok(
      instructions.some((i) => i.keyword === "EXPOSE" && i.args === String(trainerMetricsPort)),
    );
    assert.ok(!instructions.some((i) => i.keyword === "HEALTHCHECK"), "Kubernetes probes instead");
  });
});

/** Files and packages reachable from `entry` through its imports (relative ones followed). */
function importGraph(entry: string): { files: string[]; packages: Set<string> } {
  const { files, packages } = importClosure(entry, (file) => {
    const specifiers = importSpecifiers(readFileSync(file, "utf8"));
    return {
      files: specifiers
        .filter((s) => s.startsWith("."))
        .map((s) => fileURLToPath(new URL(s, `file://${file}`))),
      packages: specifiers.filter((s) => !s.startsWith(".")),
    };
  });
  return { files, packages: new Set(packages.map((p) => p.name)) };
}

describe("what the image runs", () => {
  const main = builtPath("trainer-image", "process", "main.js");

  it("never loads the Kubernetes client, the operator or the test bed", async () => {
    const { files, packages } = importGraph(main);
    assert.ok(
      files.some((file) => file.endsWith("/core/api/index.js")),
      "walks into core",
    );
    assert.ok(packages.has("@tensorflow/tfjs") && packages.has("prom-client"));
    assert.deepEqual(
      [...packages].filter((p) => p.startsWith("@kubernetes/")),
      [],
    );
    assert.deepEqual(
      files.filter((f) => /\/dist\/(operator|testbed|demo|test|bench)\//.test(f)),
      [],
    );
  });

  it("ships every package the trainer imports (dev dependencies only when the Dockerfile keeps them)", async () => {
    const manifest = JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as Record<
      string,
      Record<string, string> | undefined
    >;
    const prune = instructions.find(
      (i) => i.keyword === "RUN" && /npm prune --omit=dev/.test(i.args),
    );
    assert.ok(prune, "the build prunes dev dependencies");
    const kept = /' ([@\w./ -]+?) && npm prune/.exec(prune.args)?.[1]?.split(" ") ?? [];
    const { packages } = importGraph(main);
    const missing = [...packages]
      .filter((s) => !s.startsWith("node:") && !builtinModules.includes(s))
      .map(packageName)
      .filter(
        (name) =>
          !manifest.dependencies?.[name] &&
          !manifest.optionalDependencies?.[name] &&
          !(manifest.devDependencies?.[name] && kept.includes(name)),
      );
    assert.deepEqual(missing, []);
  });
});

describe("Dockerfile rules", () => {
  const good = `FROM node:22.1.0 AS build\nRUN true\nFROM debian:12.5\nCOPY --from=build /a /a\nUSER 1000\nENTRYPOINT ["/a"]\n`;
  it("accept a good Dockerfile", () => {
    assert.deepEqual(dockerfileViolations(good), []);
  });

  const bad: [string, string, RegExp][] = [
    ["an untagged base", good.replace("debian:12.5", "debian"), /has no tag/],
    ["latest", good.replace("debian:12.5", "debian:latest"), /uses latest/],
    ["a tag that is not a version", good.replace("debian:12.5", "debian:stable"), /not a version/],
    ["no USER", good.replace("USER 1000\n", ""), /no USER/],
    ["a named USER", good.replace("USER 1000", "USER app"), /not a numeric uid/],
    ["USER root", good.replace("USER 1000", "USER 0"), /USER 0 is root/],
    ["shell-form ENTRYPOINT", good.replace('["/a"]', "/a --flag"), /not in exec form/],
    ["ADD of a URL", good.replace("RUN true", "ADD https://example.com/x /x"), /ADD of a URL/],
    [
      "apt lists kept",
      good.replace(
        "RUN true",
        "RUN apt-get update && \\\n  apt-get install -y --no-install-recommends curl",
      ),
      /apt lists not removed/,
    ],
    [
      "recommends installed",
      good.replace(
        "RUN true",
        "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*",
      ),
      /without --no-install-recommends/,
    ],
    [
      "a shell HEALTHCHECK",
      good.replace("RUN true", "HEALTHCHECK CMD curl -f localhost"),
      /HEALTHCHECK/,
    ],
    ["a secret in ENV", good.replace("RUN true", "ENV NPM_TOKEN=abc"), /sets a secret/],
  ];
  for (const [name, text, message] of bad) {
    it(`reject ${name}`, () => {
      const violations = dockerfileViolations(text);
      assert.ok(
        violations.some((v) => message.test(v)),
        `expected ${message} in ${JSON.stringify(violations)}`,
      );
    });
  }
});
