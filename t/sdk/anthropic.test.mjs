// The official Anthropic SDK against AIGW_ANTHROPIC_BASE_URL: messages,
// plain and streaming, and its error classes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import {
    IS_MOCK, T, ANTHROPIC_MODEL, anthropicClient, fault, skipReason, expectError,
    mockAnswer, mockTokens,
} from './lib/env.mjs';

const {
    APIError, APIConnectionError, BadRequestError, AuthenticationError, PermissionDeniedError,
    NotFoundError, RateLimitError, InternalServerError,
} = Anthropic;

const client = anthropicClient();

test('messages.create: shape, deterministic answer, usage', T, async () => {
    const prompt = 'Hello, Claude. What is the tallest mountain on Earth?';
    const system = 'Answer briefly.';
    const msg = await client.messages.create({
        model: ANTHROPIC_MODEL,
        max_tokens: 256,
        system,
        messages: [{ role: 'user', content: prompt }],
    });
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(typeof msg.model, 'string');
    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0].type, 'text');
    assert.equal(msg.content[0].text, mockAnswer(prompt));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.stop_sequence, null);
    assert.equal(msg.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    assert.equal(typeof msg.usage.cache_creation_input_tokens, 'number');
    assert.equal(typeof msg.usage.cache_read_input_tokens, 'number');
    if (IS_MOCK) {
        assert.equal(msg.model, ANTHROPIC_MODEL);
        assert.equal(msg.usage.input_tokens, mockTokens(system.length + prompt.length));
        assert.match(msg._request_id, /^req_/);
    }
});

test('messages.create: content blocks, multi-turn, max_tokens stop', T, async () => {
    const prompt = 'Now write a very long essay on the history of the printing press.';
    const msg = await client.messages.create({
        model: ANTHROPIC_MODEL,
        max_tokens: 4,
        messages: [
            { role: 'user', content: 'Hi' },
            { role: 'assistant', content: 'Hello!' },
            { role: 'user', content: [{ type: 'text', text: prompt }] },
        ],
    });
    assert.equal(msg.stop_reason, 'max_tokens');
    assert.equal(msg.content[0].text, mockAnswer(prompt).slice(0, 16));
    assert.equal(msg.usage.output_tokens, 4);
});

test('messages.create stream: raw events in order', T, async () => {
    const prompt = 'Stream the answer, event by event, please.';
    const stream = await client.messages.create({
        model: ANTHROPIC_MODEL,
        max_tokens: 256,
        stream: true,
        messages: [{ role: 'user', content: prompt }],
    });
    const types = [];
    let text = '';
    let start = null;
    let delta = null;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'message_start') {
            start = ev.message;
        } else if (ev.type === 'content_block_delta') {
            assert.equal(ev.index, 0);
            assert.equal(ev.delta.type, 'text_delta');
            text += ev.delta.text;
        } else if (ev.type === 'message_delta') {
            delta = ev;
        }
    }
    assert.equal(types[0], 'message_start');
    assert.equal(types[1], 'content_block_start');
    assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
    const deltas = types.filter((t) => t === 'content_block_delta').length;
    assert.ok(deltas >= 2, `${deltas} deltas`);
    assert.equal(types.length, deltas + 5);
    assert.equal(text, mockAnswer(prompt));
    assert.match(start.id, /^msg_/);
    assert.equal(start.role, 'assistant');
    assert.deepEqual(start.content, []);
    assert.equal(start.stop_reason, null);
    assert.ok(start.usage.input_tokens > 0);
    assert.equal(delta.delta.stop_reason, 'end_turn');
    assert.equal(delta.usage.output_tokens, Math.ceil(text.length / 4));
    if (IS_MOCK) {
        assert.equal(start.usage.input_tokens, mockTokens(prompt.length));
    }
});

test('messages.stream helper: text events and finalMessage() usage', T, async () => {
    const prompt = 'Assemble this with the MessageStream helper.';
    const stream = client.messages.stream({
        model: ANTHROPIC_MODEL,
        max_tokens: 256,
        messages: [{ role: 'user', content: prompt }],
    });
    const pieces = [];
    stream.on('text', (t) => pieces.push(t));
    const final = await stream.finalMessage();
    assert.equal(pieces.join(''), mockAnswer(prompt));
    assert.equal(final.content[0].text, mockAnswer(prompt));
    assert.equal(final.stop_reason, 'end_turn');
    assert.ok(final.usage.input_tokens > 0);
    assert.equal(final.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    if (IS_MOCK) {
        assert.equal(final.usage.input_tokens, mockTokens(prompt.length));
    }
});

test('messages.countTokens', T, async () => {
    const n = await client.messages.countTokens({
        model: ANTHROPIC_MODEL,
        system: 'abcd',
        messages: [{ role: 'user', content: 'abcdefgh' }],
    });
    assert.equal(n.input_tokens, 3);
});

test('models.list (mock only)', { ...T, skip: IS_MOCK ? false : 'mock target only' }, async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        assert.equal(m.type, 'model');
        ids.push(m.id);
    }
    assert.ok(ids.includes('claude-haiku-4-5-20251001'));
});

/* ------------------------------------------------------------------ errors */

test('400 from a request the provider rejects: BadRequestError', T, async () => {
    const err = await expectError(client.messages.create({
        model: ANTHROPIC_MODEL,
        messages: [{ role: 'user', content: 'no max_tokens' }],
    }), BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(err.error.type, 'error');
    assert.equal(err.error.error.type, 'invalid_request_error');
    assert.equal(err.type, 'invalid_request_error');
    if (IS_MOCK) {
        assert.equal(err.apiMessage, 'max_tokens: Field required');
    }
});

const STATUS_CASES = [
    [400, BadRequestError, 'invalid_request_error'],
    [401, AuthenticationError, 'authentication_error'],
    [403, PermissionDeniedError, 'permission_error'],
    [404, NotFoundError, 'not_found_error'],
    [429, RateLimitError, 'rate_limit_error'],
    [500, InternalServerError, 'api_error'],
    [503, Anthropic.ServiceUnavailableError || InternalServerError, 'api_error'],
    [529, Anthropic.OverloadedError || InternalServerError, 'overloaded_error'],
];

function create(f, extra = {}) {
    const c = anthropicClient({ baseURL: f.baseURL, apiKey: f.apiKey });
    return c.messages.create({
        model: f.model, max_tokens: 64, messages: [{ role: 'user', content: 'Hello, faulty world.' }], ...extra,
    });
}

for (const [status, Cls, type] of STATUS_CASES) {
    const f = fault('anthropic', String(status), `status=${status}`);
    test(`${status} -> ${Cls.name}`, { ...T, skip: f ? false : skipReason('anthropic', String(status)) }, async () => {
        const err = await expectError(create(f), Cls);
        assert.ok(err instanceof APIError);
        if (status >= 500) {
            assert.ok(err instanceof InternalServerError);
        }
        assert.equal(err.status, status);
        assert.equal(err.error.type, 'error');
        assert.equal(typeof err.error.error.message, 'string');
        assert.ok(err.message.startsWith(`${status} `), err.message);
        if (IS_MOCK) {
            assert.equal(err.type, type);
            assert.ok(err.apiMessage.includes(`aigw-mock fault status=${status}`), err.apiMessage);
            assert.match(err.requestID, /^req_/);
        }
    });
}

{
    const f = fault('anthropic', '429', 'status=429,retry_after=9');
    test('429 carries retry-after and anthropic-ratelimit-* headers', { ...T, skip: f ? false : skipReason('anthropic', '429') }, async () => {
        const err = await expectError(create(f), RateLimitError);
        assert.match(err.headers.get('retry-after') || '', /^\d+$/);
        if (IS_MOCK) {
            assert.equal(err.headers.get('retry-after'), '9');
            assert.equal(err.headers.get('anthropic-ratelimit-requests-remaining'), '0');
        }
    });
}

{
    const f = fault('anthropic', 'STREAM_ERROR', 'stream_error=3');
    test('error event in the middle of a stream: APIError', { ...T, skip: f ? false : skipReason('anthropic', 'STREAM_ERROR') }, async () => {
        const stream = await create(f, { stream: true });
        const types = [];
        const err = await expectError((async () => {
            for await (const ev of stream) {
                types.push(ev.type);
            }
        })(), APIError);
        assert.deepEqual(types, ['message_start', 'content_block_start']);
        assert.match(err.message, /overloaded_error/);
    });
}

{
    const f = fault('anthropic', 'RESET', 'reset');
    test('connection reset: APIConnectionError', { ...T, skip: f ? false : skipReason('anthropic', 'RESET') }, async () => {
        await expectError(create(f), IS_MOCK ? APIConnectionError : InternalServerError);
    });
}

{
    const f = fault('anthropic', 'CUT', 'cut=4');
    test('stream cut after 4 events: the stream helper rejects', { ...T, skip: f ? false : skipReason('anthropic', 'CUT') }, async () => {
        const c = anthropicClient({ baseURL: f.baseURL, apiKey: f.apiKey });
        const stream = c.messages.stream({
            model: f.model, max_tokens: 64, messages: [{ role: 'user', content: 'Cut me short.' }],
        });
        stream.on('error', () => {});
        await assert.rejects(stream.finalMessage());
    });
}

/* a gateway ends a cut or stalled stream with "event: error" */

{
    const f = IS_MOCK ? null : fault('anthropic', 'CUT', 'cut=4');
    test('gateway: a cut stream raises APIError naming the cut', { ...T, skip: f ? false : 'gateway target only' }, async () => {
        const stream = await create(f, { stream: true });
        const types = [];
        const err = await expectError((async () => {
            for await (const ev of stream) {
                types.push(ev.type);
            }
        })(), APIError);
        /* the SDK does not hand out "ping" events */
        assert.deepEqual(types.slice(0, 2), ['message_start', 'content_block_start']);
        assert.match(err.message, /stream was cut after 4 event\(s\)/);
    });
}

{
    const f = IS_MOCK ? null : fault('anthropic', 'STALL', 'stall=2');
    test('gateway: a stalled stream raises APIError', { ...T, skip: f ? false : 'gateway target only' }, async () => {
        const c = anthropicClient({ baseURL: f.baseURL, apiKey: f.apiKey });
        const stream = c.messages.stream({
            model: f.model, max_tokens: 64, messages: [{ role: 'user', content: 'Stall.' }],
        });
        stream.on('error', () => {});
        const err = await expectError(stream.finalMessage(), APIError);
        assert.match(err.message, /stopped sending the answer after 2 event\(s\)/);
    });
}
