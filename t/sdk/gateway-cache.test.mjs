// The exact cache, as the official SDKs see it: a question asked twice is
// answered the second time by the gateway (X-AIGW-Cache: HIT), and the
// replay parses in each SDK exactly as the provider's answer did, JSON
// and streams, with the usage.  Only against the gateway (t/sdk/gateway.sh
// sets AIGW_CACHED_BASE_URL: a location with aigw_cache on).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { T, CHAT_MODEL, ANTHROPIC_MODEL, openaiClient, anthropicClient } from './lib/env.mjs';

const env = process.env;
const OPENAI_URL = env.AIGW_CACHED_BASE_URL;
const ANTHROPIC_URL = env.AIGW_CACHED_ANTHROPIC_BASE_URL;
const skip = OPENAI_URL ? false : 'gateway target only (AIGW_CACHED_BASE_URL)';
const run = Date.now();

test('openai: a JSON answer replayed', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const req = { model: CHAT_MODEL, messages: [{ role: 'user', content: `json ${run}` }] };

    const a = await client.chat.completions.create(req).withResponse();
    const b = await client.chat.completions.create(req).withResponse();

    assert.equal(a.response.headers.get('x-aigw-cache'), 'MISS');
    assert.equal(b.response.headers.get('x-aigw-cache'), 'HIT');
    assert.match(b.response.headers.get('age'), /^\d+$/);
    assert.deepEqual(b.data, a.data);
    assert.ok(b.data.usage.prompt_tokens > 0, 'the stored usage');
});

async function openaiStream(client, req) {
    const { data, response } = await client.chat.completions.create(req).withResponse();
    let text = '';
    let usage = null;
    let id = null;
    for await (const chunk of data) {
        id = chunk.id;
        if (chunk.usage) {
            usage = chunk.usage;
        }
        for (const c of chunk.choices) {
            text += c.delta?.content ?? '';
        }
    }
    return { cache: response.headers.get('x-aigw-cache'), text, usage, id };
}

test('openai: a stream replayed, with and without usage', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const messages = [{ role: 'user', content: `stream ${run}` }];

    const a = await openaiStream(client, { model: CHAT_MODEL, stream: true, messages });
    const b = await openaiStream(client, { model: CHAT_MODEL, stream: true, messages });
    const c = await openaiStream(client, {
        model: CHAT_MODEL, stream: true, messages,
        stream_options: { include_usage: true },
    });

    assert.equal(a.cache, 'MISS');
    assert.equal(b.cache, 'HIT');
    assert.equal(c.cache, 'HIT');
    assert.ok(a.text.length > 0);
    assert.equal(b.text, a.text);
    assert.equal(b.id, a.id, 'the stored events');
    assert.equal(b.usage, null, 'no usage chunk when not asked');
    assert.equal(c.text, a.text);
    assert.ok(c.usage && c.usage.completion_tokens > 0, 'usage when asked');
});

test('openai: the stream() helper on a hit', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const req = { model: CHAT_MODEL, messages: [{ role: 'user', content: `helper ${run}` }] };

    const first = await client.chat.completions.stream(req).finalChatCompletion();
    const again = await client.chat.completions.stream(req).finalChatCompletion();
    assert.equal(again.choices[0].message.content, first.choices[0].message.content);
});

test('anthropic: a message and a stream replayed', { ...T, skip }, async () => {
    const client = anthropicClient({ baseURL: ANTHROPIC_URL });
    const req = {
        model: ANTHROPIC_MODEL, max_tokens: 64,
        messages: [{ role: 'user', content: `anthropic ${run}` }],
    };

    const a = await client.messages.create(req).withResponse();
    const b = await client.messages.create(req).withResponse();
    assert.equal(a.response.headers.get('x-aigw-cache'), 'MISS');
    assert.equal(b.response.headers.get('x-aigw-cache'), 'HIT');
    assert.deepEqual(b.data, a.data);

    const s1 = await client.messages.stream(req).finalMessage();
    const s2 = await client.messages.stream(req).finalMessage();
    assert.equal(s2.id, s1.id, 'the stored events');
    assert.deepEqual(s2.content, s1.content);
    assert.deepEqual(s2.usage, s1.usage);
    assert.ok(s2.usage.output_tokens > 0);
});

test('across modes: a stored answer replayed as a stream, and back', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const messages = [{ role: 'user', content: `modes ${run}` }];

    const json = await client.chat.completions.create({ model: CHAT_MODEL, messages });
    const s = await openaiStream(client, {
        model: CHAT_MODEL, stream: true, messages,
        stream_options: { include_usage: true },
    });
    assert.equal(s.cache, 'HIT');
    assert.equal(s.text, json.choices[0].message.content);
    assert.deepEqual(s.usage, json.usage);

    const messages2 = [{ role: 'user', content: `modes back ${run}` }];
    const s2 = await openaiStream(client, { model: CHAT_MODEL, stream: true, messages: messages2 });
    const { data, response } = await client.chat.completions
        .create({ model: CHAT_MODEL, messages: messages2 }).withResponse();
    assert.equal(response.headers.get('x-aigw-cache'), 'HIT');
    assert.equal(data.choices[0].message.content, s2.text);

    const anthropic = anthropicClient({ baseURL: ANTHROPIC_URL });
    const req = {
        model: ANTHROPIC_MODEL, max_tokens: 64,
        messages: [{ role: 'user', content: `anthropic modes ${run}` }],
    };
    const msg = await anthropic.messages.create(req);
    const streamed = await anthropic.messages.stream(req).finalMessage();
    assert.deepEqual(streamed.content, msg.content);
    assert.equal(streamed.usage.output_tokens, msg.usage.output_tokens);
    assert.equal(streamed.stop_reason, msg.stop_reason);
});
