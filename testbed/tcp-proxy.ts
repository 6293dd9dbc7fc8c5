// A TCP proxy in front of a server, for network faults in tests: `cut()` makes the network
// silently drop everything, as a pulled cable or a partition does (no reset reaches either side;
// clients notice only by their own timeouts), and `restore()` brings it back.
import net from "node:net";

/** Forwards 127.0.0.1:`port` to a target until closed; see the file comment. */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket | undefined]>();
  private isCut = false;

  private constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
    server: net.Server,
  ) {
    this.server = server;
  }

  /** Starts a proxy to the server at `url` (nats://host:port); its own URL is `url` of it. */
  static async start(url: string): Promise<TcpProxy> {
    const { hostname, port } = new URL(url);
    const target = { host: hostname, port: Number(port) };
    let proxy: TcpProxy | undefined;
    const server = net.createServer((client) => proxy?.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    proxy = new TcpProxy(target, (server.address() as net.AddressInfo).port, server);
    return proxy;
  }

  /** The proxy's URL with the target URL's scheme. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** From now on nothing passes, and new connections hang; established ones stay open, silent. */
  cut(): void {
    this.isCut = true;
  }

  /**
   * The network is back. Connections from before or during the cut are closed (their peers timed
   * them out long ago, as real ones would have), so clients reconnect.
   */
  restore(): void {
    this.isCut = false;
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream?.destroy();
    }
    this.pairs.clear();
  }

  /** Closes every connection and the listener. */
  async close(): Promise<void> {
    this.restore();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    if (this.isCut) {
      // A connection attempt into the void: held open, never answered.
      const pair: [net.Socket, net.Socket | undefined] = [client, undefined];
      this.pairs.add(pair);
      client.on("close", () => this.pairs.delete(pair));
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on("error", () => client.destroy());
    const pair: [net.Socket, net.Socket | undefined] = [client, upstream];
    this.pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on("close", drop);
    upstream.on("close", drop);
    client.on("data", (chunk) => {
      if (!this.isCut) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!this.isCut) client.write(chunk);
    });
  }
}
