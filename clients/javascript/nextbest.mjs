// A client of nextbest's JSON API (`nextbest serve --http-port PORT`) with plain fetch: no dependencies.
// Node 18+ or any browser. Bodies are protobuf's canonical JSON mapping (camelCase field names; 64-bit
// integers are strings), as described by the server's /openapi.json.
//
//   import { NextbestClient } from "./nextbest.mjs";
//   const nextbest = new NextbestClient("http://127.0.0.1:8080", { apiKey: "..." });
//   const decision = await nextbest.rank("default", { actions: [{ id: "a" }, { id: "b" }] });
//   await nextbest.reward("default", decision.eventId, 1.0);

/** A call the server refused: `status` is the HTTP status, `code` the gRPC status name (e.g. NOT_FOUND). */
export class NextbestError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.name = "NextbestError";
    this.status = status;
    this.code = code;
  }
}

export class NextbestClient {
  /** `endpoint`: the server's HTTP address; `apiKey`: sent as `Authorization: Bearer KEY` when given. */
  constructor(endpoint, { apiKey, timeoutMs = 10000 } = {}) {
    this.endpoint = endpoint.replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.timeoutMs = timeoutMs;
  }

  async call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    const response = await fetch(this.endpoint + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await response.text();
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      // not nextbest's JSON: e.g. a proxy's error page
      throw new NextbestError(response.status, "UNKNOWN", text.slice(0, 200));
    }
    if (!response.ok) throw new NextbestError(response.status, answer.code, answer.message);
    return answer;
  }

  /** Rank `request.actions` in `request.context`; resolves to the decision (eventId, chosenActionId, ranking, ...). */
  rank(loop, request) {
    return this.call("POST", `/v1/loops/${encodeURIComponent(loop)}:rank`, request);
  }

  /** Fill every slot of `request.slots` at once (a loop whose policy is `vw:--ccb_explore_adf ...`). */
  rankMultiSlot(loop, request) {
    return this.call("POST", `/v1/loops/${encodeURIComponent(loop)}:rankMultiSlot`, request);
  }

  /**
   * Rank many requests in one call and one durable commit; each request names its loop (empty: "default").
   * Resolves to `{ items: [...] }` in the requests' order, each `{ response }` or `{ error: { code, message } }`
   * (code: the gRPC status number Rank would have answered, e.g. 3 for INVALID_ARGUMENT; message names the field):
   * one bad request fails alone.
   */
  rankBatch(requests) {
    return this.call("POST", "/v1/rank:batch", { requests });
  }

  /** Report the reward of a decision; a retry with the same `rewardId` counts once. */
  reward(loop, eventId, value, rewardId = "") {
    const path = `/v1/loops/${encodeURIComponent(loop)}/events/${encodeURIComponent(eventId)}:reward`;
    return this.call("POST", path, { value, rewardId });
  }

  /** Activate a deferred decision, so that it is learned from. */
  activate(loop, eventId) {
    return this.call("POST", `/v1/loops/${encodeURIComponent(loop)}/events/${encodeURIComponent(eventId)}:activate`, {});
  }

  stats(loop) {
    return this.call("GET", `/v1/loops/${encodeURIComponent(loop)}/stats`);
  }
}
