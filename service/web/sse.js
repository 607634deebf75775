// Server-Sent Events over any byte stream (fetch + ReadableStream, so a POST can stream), parsed as
// the HTML standard says: lines end with CRLF, LF or CR; a blank line dispatches the event; lines
// starting with ":" are comments (sse-starlette's pings); several data lines join with "\n".

export class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.eventName = "";
    this.data = [];
    this.hasData = false;
  }

  /** Feed decoded text; complete lines are handled, a partial one is kept for the next chunk. */
  push(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A CR at the very end may be the first half of a CRLF split across chunks: wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  /** The stream ended: a trailing line is handled, and an event missing only its blank line is
   * still dispatched (the standard drops it; losing the final answer would be worse). */
  end() {
    if (this.buffer.endsWith("\r")) this.buffer = this.buffer.slice(0, -1);
    if (this.buffer) this.line(this.buffer);
    this.buffer = "";
    this.line("");
  }

  line(line) {
    if (line === "") {
      if (this.hasData) this.onEvent({ event: this.eventName || "message", data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventName = value;
    else if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    }
    // "id" and "retry" mean nothing to a one-shot POST stream.
  }
}

/** Read a fetch Response body as SSE, calling onEvent({event, data}) for each event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  parser.end();
}
