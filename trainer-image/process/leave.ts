// `leave`: deregisters this member from its federation, signing with the mounted member key. The
// operator runs it as a short Job when the member's TrainingFederation is deleted, so that the
// operator never reads the key Secret; an owner leaving from a workstation runs it by hand.
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { TrainerConfig } from "../../core/api/trainer-config.js";
import {
  connectNats,
  type Deregistration,
  deregisterMember,
  displayUrls,
  federationExists,
} from "../../core/protocol/index.js";
import { isValidId } from "../../core/protocol/wire.js";
import { checkNatsTransport, readMemberPrivateKey, TrainerConfigError } from "./trainer-config.js";

/** What leaving found: the protocol's outcome, or no federation on NATS at all. */
export type LeaveOutcome = Deregistration | "no-federation";

/** Leaving took longer than it may: NATS is unreachable or does not answer. */
export class LeaveTimeoutError extends Error {
  override name = "LeaveTimeoutError";
}

/**
 * Deregisters config.member.id from config.federation.id. A federation or member record that does
 * not exist is nothing to do (a member that never joined leaves at once); a record signed by
 * another key is not this member's to remove. Throws TrainerConfigError for a config or key that
 * cannot work, LeaveTimeoutError when NATS does not answer within timeoutMs.
 */
export async function leaveFederation(
  config: TrainerConfig,
  options: { timeoutMs: number; log: Logger },
): Promise<LeaveOutcome> {
  await checkNatsTransport(config);
  const { id: memberId } = config.member;
  if (!isValidId(memberId))
    throw new TrainerConfigError(`member.id: "${memberId}" is not a member id (a DNS label)`);
  const privateKey = await readMemberPrivateKey(config);
  const federationId = config.federation.id;
  const { natsUrls, credentialsFile, tls } = config.transport;
  let nc: NatsConnection | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new LeaveTimeoutError(
            `NATS at ${displayUrls(natsUrls)} did not answer within ${options.timeoutMs} ms`,
          ),
        ),
      options.timeoutMs,
    );
  });
  const work = (async () => {
    nc = await connectNats(natsUrls, `${memberId}-leave`, {
      ...(credentialsFile ? { credentialsFile } : {}),
      ...(tls ? { tls } : {}),
    });
    if (!(await federationExists(nc, federationId))) return "no-federation" as const;
    return deregisterMember(nc, { federationId, memberId, privateKey });
  })();
  try {
    const outcome = await Promise.race([work, timeout]);
    options.log.info({ federation: federationId, outcome }, leaveMessages[outcome]);
    return outcome;
  } finally {
    clearTimeout(timer);
    work.catch(() => {});
    await (nc as NatsConnection | undefined)?.close().catch(() => {});
  }
}

const leaveMessages: Record<LeaveOutcome, string> = {
  deregistered: "deregistered the member: it has left the federation",
  "not-registered": "the member is not registered: nothing to deregister",
  "other-key":
    "the member id is registered with another key: that record is not this key's to remove",
  "no-federation": "the federation does not exist on NATS: nothing to deregister",
};
