// What a trained model can do, next to what the same model could do before training: held-out
// exact-answer accuracy for Arithmetic, a few generated lines for text. The trainer logs it at the
// end of a run (and `npm run demo` prints it), so a run's result is more than a loss figure.
import type { TextCorpus } from "./data.js";
import { Model, type TransformerDefinition } from "./model.js";
import {
  type AnsweredProblem,
  arithmeticAccuracy,
  ENGLISH_PROMPTS,
  generateText,
} from "./skills.js";

/** Held-out problems the accuracy is measured on: enough for a steady figure, quick on a CPU. */
const PROBLEMS = 200;
/** Characters generated per text sample. */
const SAMPLE_LENGTH = 80;

/** What one model does on the held-out data. */
export type Skill =
  | { kind: "arithmetic"; accuracy: number; problems: number; answers: AnsweredProblem[] }
  | { kind: "text"; samples: string[] };

/** The trained model's skill and the untrained model's, on the same held-out data. */
export interface Learned {
  trained: Skill;
  untrained: Skill;
}

/** Measures one parameter vector of `definition` on `evalText`. */
export async function measureSkill(
  definition: TransformerDefinition,
  parameters: Float32Array,
  evalText: TextCorpus,
  arithmetic: boolean,
): Promise<Skill> {
  const model = new Model(definition, parameters);
  try {
    if (arithmetic) {
      const result = await arithmeticAccuracy(model, evalText, { count: PROBLEMS, examples: 3 });
      return {
        kind: "arithmetic",
        accuracy: result.accuracy,
        problems: result.problems,
        answers: result.examples,
      };
    }
    const prompts = ENGLISH_PROMPTS.filter((prompt) =>
      [...prompt].every((character) => evalText.vocabulary.includes(character)),
    ).slice(0, 3);
    return {
      kind: "text",
      samples: await generateText(model, evalText.vocabulary, prompts, {
        maxTokens: SAMPLE_LENGTH,
      }),
    };
  } finally {
    model.dispose();
  }
}

/** One line that says what a skill is, for logs and the demo. */
export function describeSkill(skill: Skill): string {
  if (skill.kind === "arithmetic") {
    const shown = skill.answers
      .map((a) => `${a.prompt}${a.predicted}${a.correct ? "" : ` (not ${a.expected})`}`)
      .join(", ");
    return `${(100 * skill.accuracy).toFixed(1)} % of ${skill.problems} held-out answers exactly right (${shown})`;
  }
  return skill.samples.map((sample) => JSON.stringify(sample)).join(" ");
}
