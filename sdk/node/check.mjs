// The official OpenAI Node SDK against SIGANTENG, unchanged but for its base
// URL: chat (plain, streamed, a tool call), a background response polled to
// its end and one streamed, embeddings (the SDK asks for base64 by default),
// models, and a batch (upload, create, poll, read the output and error
// files joined on custom_id, list, cancel, delete). Prints one line per check; exits non-zero at the first
// failure. SIGANTENG_URL names the server.
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";

const client = new OpenAI({ baseURL: `${process.env.SIGANTENG_URL}/v1`, apiKey: "sk-anything", maxRetries: 0 });
const model = "gpt-test";

async function check(name, fn) {
  await fn();
  console.log(`ok ${name}`);
}

await check("chat", async () => {
  const out = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello node" }] });
  assert.equal(out.object, "chat.completion");
  assert.equal(out.choices[0].message.content, "echo: hello node");
  assert.equal(out.usage.total_tokens, 5);
});

await check("chat stream", async () => {
  const stream = await client.chat.completions.create({
    model, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "one two" }],
  });
  let text = "", usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? "";
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, "echo: one two");
  assert.ok(chunks > 3);
  assert.equal(usage.completion_tokens, 3);
});

await check("tool call", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { q: { type: "string" } } } } }];
  const messages = [{ role: "user", content: "Weather in Surabaya?" }];
  const first = await client.chat.completions.create({ model, messages, tools });
  const call = first.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  messages.push(first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "30°C" });
  const second = await client.chat.completions.create({ model, messages, tools });
  assert.equal(second.choices[0].message.content, "the tool said: 30°C");
});

await check("background response", async () => {
  let resp = await client.responses.create({ model, input: "hello background", background: true });
  assert.ok(resp.id.startsWith("resp_"));
  for (let i = 0; i < 300 && (resp.status === "queued" || resp.status === "in_progress"); i++) {
    await new Promise((r) => setTimeout(r, 20));
    resp = await client.responses.retrieve(resp.id);
  }
  assert.equal(resp.status, "completed");
  assert.equal(resp.output_text, "echo: hello background");
});

await check("response stream", async () => {
  const stream = await client.responses.create({ model, input: "alpha beta", stream: true });
  let text = "", last = null, seq = -1;
  for await (const event of stream) {
    assert.equal(event.sequence_number, seq + 1);
    seq = event.sequence_number;
    if (event.type === "response.output_text.delta") text += event.delta;
    last = event;
  }
  assert.equal(text, "echo: alpha beta");
  assert.equal(last.type, "response.completed");
});

await check("embeddings", async () => {
  const out = await client.embeddings.create({ model: "text-embedding-3-small", input: ["kucing", "cat"] });
  assert.equal(out.data.length, 2);
  assert.ok(out.data[0].embedding.length > 0);
  assert.equal(typeof out.data[0].embedding[0], "number", "the SDK decoded the base64 it asked for");
});

await check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(model), ids.join(","));
});

await check("errors", async () => {
  await assert.rejects(client.chat.completions.create({ model, messages: [] }), (err) => {
    assert.equal(err.status, 400);
    assert.equal(err.param, "messages");
    return true;
  });
  await assert.rejects(client.responses.retrieve("resp_00000000-0000-4000-8000-000000000000"), (err) => err.status === 404);
});

async function awaitBatch(id) {
  for (let i = 0; i < 600; i++) {
    const b = await client.batches.retrieve(id);
    if (["completed", "failed", "cancelled", "expired"].includes(b.status)) return b;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`batch ${id} did not end`);
}

async function lines(fileID) {
  const res = await client.files.content(fileID);
  const out = new Map();
  for (const line of (await res.text()).split("\n").filter(Boolean)) {
    const l = JSON.parse(line);
    assert.ok(!out.has(l.custom_id), `${l.custom_id} answered twice`);
    out.set(l.custom_id, l);
  }
  return out;
}

await check("batch", async () => {
  const input = [0, 1, 2, 3, 4].map((i) => JSON.stringify({
    custom_id: `n${i}`, method: "POST", url: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content: `node ${i}` }], ...(i === 3 ? { temperature: 9 } : {}) },
  })).join("\n") + "\n";
  const file = await client.files.create({ file: await toFile(Buffer.from(input), "input.jsonl"), purpose: "batch" });
  assert.equal(file.purpose, "batch");
  const batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  assert.equal(batch.object, "batch");
  const done = await awaitBatch(batch.id);
  assert.equal(done.status, "completed");
  assert.deepEqual(done.request_counts, { total: 5, completed: 4, failed: 1 });
  const out = await lines(done.output_file_id);
  for (const i of [0, 1, 2, 4]) {
    assert.equal(out.get(`n${i}`).response.body.choices[0].message.content, `echo: node ${i}`);
  }
  const errs = await lines(done.error_file_id);
  assert.equal(errs.get("n3").response.status_code, 400);
  const listed = [];
  for await (const b of client.batches.list({ limit: 5 })) listed.push(b.id);
  assert.ok(listed.includes(batch.id));
  const cancelled = await client.batches.cancel(batch.id);
  assert.equal(cancelled.status, "completed", "an ended batch is answered as it is");
  assert.equal((await client.files.delete(file.id)).deleted, true);
  await assert.rejects(client.files.retrieve(file.id), (err) => err.status === 404);
});

await check("batch: embeddings, and a malformed file", async () => {
  const emb = ["a", "b", "c"].map((t, i) => JSON.stringify({
    custom_id: `e${i}`, method: "POST", url: "/v1/embeddings", body: { model: "text-embedding-3-small", input: t },
  })).join("\n") + "\n";
  const embFile = await client.files.create({ file: await toFile(Buffer.from(emb), "emb.jsonl"), purpose: "batch" });
  const embBatch = await awaitBatch((await client.batches.create({
    input_file_id: embFile.id, endpoint: "/v1/embeddings", completion_window: "24h",
  })).id);
  assert.equal(embBatch.status, "completed");
  for (const [id, l] of await lines(embBatch.output_file_id)) {
    assert.ok(l.response.body.data[0].embedding.length > 0, id);
  }
  const bad = "{not json\n" + JSON.stringify({ custom_id: "x", method: "POST", url: "/v1/embeddings", body: { input: "x" } }) + "\n";
  const badFile = await client.files.create({ file: await toFile(Buffer.from(bad), "bad.jsonl"), purpose: "batch" });
  const failed = await awaitBatch((await client.batches.create({
    input_file_id: badFile.id, endpoint: "/v1/chat/completions", completion_window: "24h",
  })).id);
  assert.equal(failed.status, "failed");
  assert.deepEqual(failed.errors.data.map((e) => [e.line, e.code]), [[1, "invalid_json_line"], [2, "mismatched_endpoint"]]);
  await assert.rejects(client.batches.create({ input_file_id: "file-nope", endpoint: "/v1/chat/completions", completion_window: "24h" }),
    (err) => err.status === 400 && err.param === "input_file_id");
});
