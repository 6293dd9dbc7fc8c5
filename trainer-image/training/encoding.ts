// Text ↔ token ids for the two text encodings: characters over a corpus's own vocabulary, or UTF-8
// bytes over a fixed vocabulary of 256. Both are carried by the same TextCorpus shape: a byte
// corpus's vocabulary is the 256 code points U+0000..U+00FF, so token id = byte value and the
// models need no special case.
import { encodeText } from "./data.js";

/** The vocabulary of a byte-level corpus: code point i stands for byte i. */
export const BYTE_VOCABULARY = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));

/** Whether `vocabulary` is the byte vocabulary (ids are UTF-8 bytes). */
export function isByteVocabulary(vocabulary: string): boolean {
  return vocabulary === BYTE_VOCABULARY;
}

/** The token ids of `text`: its UTF-8 bytes for the byte vocabulary, else its characters. */
export function encodeString(text: string, vocabulary: string): Uint8Array {
  if (isByteVocabulary(vocabulary)) return new Uint8Array(Buffer.from(text, "utf8"));
  return encodeText(text, vocabulary).tokens;
}

/**
 * The text of token ids: UTF-8 decoding for the byte vocabulary (an invalid sequence, such as a
 * generated stray continuation byte, becomes U+FFFD), else one character per id.
 */
export function decodeTokens(ids: ArrayLike<number>, vocabulary: string): string {
  if (isByteVocabulary(vocabulary)) return Buffer.from(Uint8Array.from(ids)).toString("utf8");
  let text = "";
  for (let i = 0; i < ids.length; i++) {
    const character = vocabulary[ids[i]!];
    if (character === undefined) {
      throw new RangeError(`token id ${ids[i]} is outside a vocabulary of ${vocabulary.length}`);
    }
    text += character;
  }
  return text;
}
