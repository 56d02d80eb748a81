// Ranks and rewards `count` times against a nextbest server over its JSON API, rewarding one action of
// three, and prints what happened as JSON:  node example.mjs http://127.0.0.1:8080 [count] [loop]
import { NextbestClient, NextbestError } from "./nextbest.mjs";

const [endpoint, count = "50", loop = "default"] = process.argv.slice(2);
const nextbest = new NextbestClient(endpoint, { apiKey: process.env.NEXTBEST_API_KEY });
const actions = [
  { id: "welcome-email", channel: "email", features: { offer: { categorical: { kind: "welcome" } } } },
  { id: "app-tip", channel: "push", features: { offer: { categorical: { kind: "tip" } } } },
  { id: "sms-coupon", channel: "sms", features: { offer: { categorical: { kind: "coupon" } } } },
];
const decisions = [];
for (let i = 0; i < Number(count); i++) {
  const context = { user: { categorical: { segment: i % 2 ? "student" : "retired" } } };
  const decision = await nextbest.rank(loop, { eventId: `js-${i}`, context, actions });
  const value = decision.chosenActionId === "app-tip" ? 1 : 0;
  await nextbest.reward(loop, decision.eventId, value, "click");
  decisions.push({ eventId: decision.eventId, chosen: decision.chosenActionId, value });
}
const batch = await nextbest.rankBatch([
  { loop, eventId: "js-batch-0", actions },
  { loop, eventId: "js-batch-1", actions: [] },
]);
const batched = batch.items.map((item) => (item.response ? item.response.eventId : item.error.code));
let refused = null;
try {
  await nextbest.rank("no-such-loop", { actions });
} catch (error) {
  if (!(error instanceof NextbestError)) throw error;
  refused = { status: error.status, code: error.code, message: error.message };
}
console.log(JSON.stringify({ decisions, batched, refused }));
