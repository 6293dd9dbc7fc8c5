// client-node 2.x builds a new undici Agent for every API call and every watch, so each call
// opens its own TLS connection with its own copy of the CA and client certificate, and the
// connection lingers until its keep-alive ends. With a thousand objects being created that is
// thousands of TLS connections: slower calls and tens of MB of native memory that glibc never
// gives back. This KubeConfig reuses one Agent (a keep-alive connection pool) for all calls.
import { KubeConfig, type RequestContext } from "@kubernetes/client-node";

type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;

/**
 * How long one pool serves new calls. The credentials are still read on every call (a token or
 * certificate file may be rotated); a new pool then picks up a rotated CA or client certificate
 * (also one from an exec plugin) within this time. Certificates are renewed well before they
 * expire, so minutes are soon enough. The old pool's connections close when they go idle.
 */
export const connectionPoolMaxAgeMs = 5 * 60_000;

/** A KubeConfig whose API calls and watches share one connection pool. */
export class PooledKubeConfig extends KubeConfig {
  private pool?: { context: string; dispatcher: Dispatcher; until: number };

  constructor(private readonly maxAgeMs = connectionPoolMaxAgeMs) {
    super();
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    // The Agent just made for this call is unused yet: it costs nothing to drop.
    const fresh = context.getDispatcher();
    if (!fresh) return; // Plain HTTP: fetch's global pool already reuses connections.
    const now = Date.now();
    const current = this.getCurrentContext();
    if (!this.pool || this.pool.context !== current || now >= this.pool.until) {
      this.pool = { context: current, dispatcher: fresh, until: now + this.maxAgeMs };
    }
    context.setDispatcher(this.pool.dispatcher);
  }
}
