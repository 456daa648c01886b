// The official OpenAI Node SDK against SIGANTENG, unchanged but for its base
// URL: chat (plain, streamed, a tool call), a background response polled to
// its end and one streamed, embeddings (the SDK asks for base64 by default)
// and models. Prints one line per check; exits non-zero at the first
// failure. SIGANTENG_URL names the server.
import assert from "node:assert/strict";
import OpenAI from "openai";

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
