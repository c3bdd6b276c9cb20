// Resilience as the official SDKs see it: SSE keep-alive comments while
// the first token is late are skipped by their stream parsers, and a
// stream cut mid-answer and resumed on the next model (with a prefill)
// parses as one whole answer, its usage included.  Only against the
// gateway (t/sdk/gateway.sh sets AIGW_RESILIENT_BASE_URL: a location with
// aigw_stream_keepalive and aigw_stream_resume, routes to faulty mocks).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { T, openaiClient, anthropicClient } from './lib/env.mjs';

const env = process.env;
const OPENAI_URL = env.AIGW_RESILIENT_BASE_URL;
const ANTHROPIC_URL = env.AIGW_RESILIENT_ANTHROPIC_BASE_URL;
const skip = OPENAI_URL ? false : 'gateway target only (AIGW_RESILIENT_BASE_URL)';

/* the mock's answer to a prompt */
const answer = (prompt) => 'Mock answer to: ' + prompt.slice(0, 40);

async function openaiText(model, prompt) {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const stream = await client.chat.completions.create({
        model, stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    let usage = null;
    let roles = 0;
    for await (const chunk of stream) {
        if (chunk.usage) {
            usage = chunk.usage;
        }
        for (const c of chunk.choices) {
            text += c.delta?.content ?? '';
            roles += c.delta?.role ? 1 : 0;
        }
    }
    return { text, usage, roles };
}

test('openai: keep-alives while the first token is late, then the answer',
    { ...T, skip }, async () => {
    const r = await openaiText('late-gpt', 'keep me alive');

    assert.equal(r.text, answer('keep me alive'));
    assert.equal(r.roles, 1);
    assert.ok(r.usage.completion_tokens > 0);
});

test('openai: a stream cut mid-answer, resumed: one answer, its usage',
    { ...T, skip }, async () => {
    const r = await openaiText('resumed-gpt', 'one two three four');

    assert.equal(r.text, answer('one two three four'));
    assert.equal(r.roles, 1);
    assert.ok(r.usage.completion_tokens > 0);
});

test('anthropic: keep-alives, then messages.stream() and finalMessage()',
    { ...T, skip }, async () => {
    const client = anthropicClient({ baseURL: ANTHROPIC_URL });
    const msg = await client.messages.stream({
        model: 'late-claude', max_tokens: 100,
        messages: [{ role: 'user', content: 'keep me alive' }],
    }).finalMessage();

    assert.equal(msg.content[0].text, answer('keep me alive'));
    assert.equal(msg.stop_reason, 'end_turn');
});

test('anthropic: a stream cut mid-answer, resumed: one message',
    { ...T, skip }, async () => {
    const client = anthropicClient({ baseURL: ANTHROPIC_URL });
    const events = [];
    const stream = client.messages.stream({
        model: 'resumed-claude', max_tokens: 100,
        messages: [{ role: 'user', content: 'one two three four' }],
    });
    stream.on('streamEvent', (e) => events.push(e.type));
    const msg = await stream.finalMessage();

    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0].text, answer('one two three four'));
    assert.equal(events.filter((t) => t === 'message_start').length, 1);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.ok(msg.usage.output_tokens > 0);
});
