// The protocol's timing and size settings, and their defaults; see docs/protocol.md, "Timeouts
// and limits".
import type { ProtocolSettings } from "./types.js";

/** The protocol's defaults. */
export const defaultSettings: ProtocolSettings = {
  heartbeatIntervalMs: 2_000,
  workerTtlMs: 10_000,
  leaseTtlMs: 6_000,
  // 0: the server's max_payload less room for headers, at most 1 MiB (measured: larger chunks
  // made JetStream file-store publishes slower, smaller ones add per-message overhead).
  chunkBytes: 0,
  maxUpdateBytes: 256 * 1024 * 1024,
  maxRoundBytes: 2 * 1024 * 1024 * 1024,
  // For as long as the worker runs: a member cut off for minutes must not exit for it.
  publishRetryMs: Number.POSITIVE_INFINITY,
};

/** The defaults with the given settings laid over them. */
export function settingsWith(settings: Partial<ProtocolSettings> = {}): ProtocolSettings {
  return { ...defaultSettings, ...settings };
}
