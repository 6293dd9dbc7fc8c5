// The CRI container log format the kubelet asks containerd to write: one line per record,
// `<RFC 3339 time> <stdout|stderr> <P|F> <content>`, where P marks a partial line continued by
// the next record and F a full one.

/** Turns CRI log records, fed in chunks of any size, back into the lines the container wrote. */
export class CriLogDecoder {
  private pending = "";
  private partial = "";

  /** Feeds a chunk; returns the complete lines it finishes, each ending in a newline. */
  push(chunk: string): string {
    const records = (this.pending + chunk).split("\n");
    this.pending = records.pop() ?? "";
    let out = "";
    for (const record of records) {
      const match = /^\S+ (?:stdout|stderr) ([PF]) ?(.*)$/.exec(record);
      if (!match) continue;
      if (match[1] === "P") {
        this.partial += match[2];
      } else {
        out += `${this.partial}${match[2]}\n`;
        this.partial = "";
      }
    }
    return out;
  }
}
