// The official OpenAI SDK against AIGW_BASE_URL: chat (plain and streaming),
// legacy completions, embeddings, models.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
    IS_MOCK, T, CHAT_MODEL, COMPLETION_MODEL, EMBEDDING_MODEL,
    openaiClient, mockAnswer, mockTokens,
} from './lib/env.mjs';

const client = openaiClient();

test('chat completion: shape, deterministic answer, usage', T, async () => {
    const prompt = 'What is the capital of France? Answer in one word please.';
    const system = 'You are terse.';
    const res = await client.chat.completions.create({
        model: CHAT_MODEL,
        messages: [{ role: 'system', content: system }, { role: 'user', content: prompt }],
    });
    assert.match(res.id, /^chatcmpl-/);
    assert.equal(res.object, 'chat.completion');
    assert.equal(typeof res.created, 'number');
    assert.equal(typeof res.model, 'string');
    assert.equal(res.choices.length, 1);
    const c = res.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.finish_reason, 'stop');
    assert.equal(c.message.role, 'assistant');
    assert.equal(c.message.content, mockAnswer(prompt));
    assert.equal(c.message.refusal, null);
    assert.equal(c.logprobs, null);
    const u = res.usage;
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    assert.equal(u.completion_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    assert.equal(typeof u.prompt_tokens_details.cached_tokens, 'number');
    assert.equal(typeof u.completion_tokens_details.reasoning_tokens, 'number');
    if (IS_MOCK) {
        assert.equal(res.model, CHAT_MODEL);
        assert.match(res.system_fingerprint, /^fp_/);
        assert.equal(u.prompt_tokens, mockTokens(system.length + prompt.length));
        assert.match(res._request_id, /^req_/);
    }
});

test('chat completion: content parts, n=2, max_tokens truncation', T, async () => {
    const prompt = 'Tell me a long story about a lighthouse keeper and the sea.';
    const res = await client.chat.completions.create({
        model: CHAT_MODEL,
        n: 2,
        max_tokens: 3,
        messages: [{ role: 'user', content: [{ type: 'text', text: prompt }] }],
    });
    assert.equal(res.choices.length, 2);
    for (const [i, c] of res.choices.entries()) {
        assert.equal(c.index, i);
        assert.equal(c.finish_reason, 'length');
        assert.equal(c.message.content, mockAnswer(prompt).slice(0, 12));
    }
    assert.equal(res.usage.completion_tokens, 6);
});

test('chat completion stream: deltas, finish_reason, include_usage', T, async () => {
    const prompt = 'Stream me an answer about streaming protocols and SSE.';
    const stream = await client.chat.completions.create({
        model: CHAT_MODEL,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: prompt }],
    });
    const chunks = [];
    for await (const chunk of stream) {
        chunks.push(chunk);
    }
    assert.ok(chunks.length >= 4, `only ${chunks.length} chunks`);
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1, 'all chunks share one id');
    assert.match(chunks[0].id, /^chatcmpl-/);
    for (const c of chunks) {
        assert.equal(c.object, 'chat.completion.chunk');
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');

    const withChoices = chunks.filter((c) => c.choices.length > 0);
    const text = withChoices.map((c) => c.choices[0].delta.content || '').join('');
    assert.equal(text, mockAnswer(prompt));
    assert.ok(withChoices.length - 2 >= 2, 'the content arrives in several pieces');
    assert.equal(withChoices[withChoices.length - 1].choices[0].finish_reason, 'stop');

    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage, 'final chunk carries usage');
    assert.equal(last.usage.completion_tokens, Math.ceil(text.length / 4));
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
    if (IS_MOCK) {
        assert.equal(last.usage.prompt_tokens, mockTokens(prompt.length));
    }
});

test('chat completion stream without include_usage', T, async () => {
    const prompt = 'No usage please.';
    const stream = await client.chat.completions.create({
        model: CHAT_MODEL,
        stream: true,
        messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    let finish = null;
    let usageChunks = 0;
    for await (const chunk of stream) {
        if (chunk.usage) {
            usageChunks++;
        }
        for (const c of chunk.choices) {
            text += c.delta.content || '';
            finish = c.finish_reason || finish;
        }
    }
    assert.equal(text, mockAnswer(prompt));
    assert.equal(finish, 'stop');
    if (IS_MOCK) {
        assert.equal(usageChunks, 0);
    }
});

test('chat completion stream helper: finalChatCompletion()', T, async () => {
    const prompt = 'Use the stream helper of the SDK to assemble this.';
    const runner = client.chat.completions.stream({
        model: CHAT_MODEL,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: prompt }],
    });
    const deltas = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, mockAnswer(prompt));
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(deltas.join(''), mockAnswer(prompt));
    assert.ok(final.usage && final.usage.total_tokens > 0);
});

test('responses: JSON, output_text, usage', T, async () => {
    const prompt = 'Name three colours of the rainbow, please.';
    const res = await client.responses.create({
        model: CHAT_MODEL,
        instructions: 'Be brief.',
        input: [{ role: 'user', content: [{ type: 'input_text', text: prompt }] }],
    });
    assert.match(res.id, /^resp_/);
    assert.equal(res.object, 'response');
    assert.equal(res.status, 'completed');
    assert.equal(res.output_text, mockAnswer(prompt));
    const u = res.usage;
    assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
    assert.equal(u.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    assert.equal(typeof u.input_tokens_details.cached_tokens, 'number');
    assert.equal(typeof u.output_tokens_details.reasoning_tokens, 'number');
});

test('responses stream: typed events in order, the response last', T, async () => {
    const prompt = 'Tell me about lighthouses, in a few words.';
    const stream = await client.responses.create({ model: CHAT_MODEL, input: prompt, stream: true });
    const types = [];
    let text = '';
    let last;
    let seq = -1;
    for await (const ev of stream) {
        types.push(ev.type);
        assert.equal(ev.sequence_number, seq + 1);
        seq = ev.sequence_number;
        if (ev.type === 'response.output_text.delta') {
            text += ev.delta;
        }
        last = ev;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(last.type, 'response.completed');
    assert.equal(text, mockAnswer(prompt));
    assert.equal(last.response.output_text ?? last.response.output[0].content[0].text, mockAnswer(prompt));
    assert.equal(last.response.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('responses.stream helper: finalResponse()', T, async () => {
    const prompt = 'One more time, about the sea.';
    const stream = client.responses.stream({ model: CHAT_MODEL, input: prompt });
    let text = '';
    stream.on('response.output_text.delta', (ev) => {
        text += ev.delta;
    });
    const final = await stream.finalResponse();
    assert.equal(text, mockAnswer(prompt));
    assert.equal(final.output_text, mockAnswer(prompt));
    assert.equal(final.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('legacy completions', T, async () => {
    const prompt = 'Say this is a test';
    const res = await client.completions.create({ model: COMPLETION_MODEL, prompt, max_tokens: 64 });
    assert.match(res.id, /^cmpl-/);
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0].text, mockAnswer(prompt));
    assert.equal(res.choices[0].index, 0);
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.equal(res.choices[0].logprobs, null);
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
    if (IS_MOCK) {
        assert.equal(res.usage.prompt_tokens, mockTokens(prompt.length));
    }
});

test('legacy completions stream', T, async () => {
    const prompt = 'Stream a legacy completion, if you would.';
    const stream = await client.completions.create({
        model: COMPLETION_MODEL, prompt, stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
        assert.equal(chunk.object, 'text_completion');
        for (const c of chunk.choices) {
            text += c.text;
            finish = c.finish_reason || finish;
        }
        usage = chunk.usage || usage;
    }
    assert.equal(text, mockAnswer(prompt));
    assert.equal(finish, 'stop');
    assert.ok(usage && usage.completion_tokens === Math.ceil(text.length / 4));
});

function norm(v) {
    return Math.sqrt(v.reduce((a, x) => a + x * x, 0));
}

test('embeddings: SDK default (base64 on the wire), deterministic unit vectors', T, async () => {
    const a = await client.embeddings.create({ model: EMBEDDING_MODEL, input: 'The food was delicious' });
    assert.equal(a.object, 'list');
    assert.equal(a.data.length, 1);
    assert.equal(a.data[0].object, 'embedding');
    assert.equal(a.data[0].index, 0);
    const v = a.data[0].embedding;
    assert.ok(Array.isArray(v) && v.length > 0);
    assert.ok(v.every((x) => typeof x === 'number' && Number.isFinite(x)));
    assert.ok(Math.abs(norm(v) - 1) < 1e-3, `norm ${norm(v)}`);
    assert.equal(a.usage.total_tokens, a.usage.prompt_tokens);
    if (IS_MOCK) {
        assert.equal(v.length, 1536);
        assert.equal(a.model, EMBEDDING_MODEL);
        const b = await client.embeddings.create({ model: EMBEDDING_MODEL, input: 'The food was delicious' });
        assert.deepEqual(b.data[0].embedding, v);
    }
});

test('embeddings: float format, dimensions, several inputs', T, async () => {
    const res = await client.embeddings.create({
        model: EMBEDDING_MODEL,
        input: ['first input', 'second input', 'third'],
        encoding_format: 'float',
        dimensions: 8,
    });
    assert.equal(res.data.length, 3);
    res.data.forEach((d, i) => {
        assert.equal(d.index, i);
        assert.equal(d.embedding.length, 8);
        assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-3);
    });
    assert.notDeepEqual(res.data[0].embedding, res.data[1].embedding);
    if (IS_MOCK) {
        assert.equal(res.usage.prompt_tokens, 3 + 3 + 2);
    }
});

test('models.list and models.retrieve', T, async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        assert.equal(m.object, 'model');
        assert.equal(typeof m.id, 'string');
        ids.push(m.id);
    }
    assert.ok(ids.length > 0);
    if (IS_MOCK) {
        assert.ok(ids.includes('gpt-4o-mini'));
        assert.ok(ids.includes(EMBEDDING_MODEL));
        const m = await client.models.retrieve('gpt-4o-mini');
        assert.equal(m.id, 'gpt-4o-mini');
        assert.equal(m.owned_by, 'system');
    }
});
