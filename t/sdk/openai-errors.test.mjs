// The OpenAI SDK's error handling: typed error classes for each status, the
// error body parsed, and transport failures (reset, hang, garbage, broken
// JSON, cut streams).  Faults come from the mock's /fault/<options>/ base URL
// prefix, or from AIGW_FAULT_* overrides (see lib/env.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
    IS_MOCK, T, CHAT_MODEL, openaiClient, fault, skipReason, expectError, mockAnswer,
} from './lib/env.mjs';

const {
    APIError, APIConnectionError, APIConnectionTimeoutError, BadRequestError, AuthenticationError,
    PermissionDeniedError, NotFoundError, ConflictError, UnprocessableEntityError,
    RateLimitError, InternalServerError,
} = OpenAI;

const MESSAGES = [{ role: 'user', content: 'Hello, faulty world.' }];

function chat(f, extra = {}) {
    const client = openaiClient({ baseURL: f.baseURL, apiKey: f.apiKey, timeout: extra.timeout });
    delete extra.timeout;
    return client.chat.completions.create({ model: f.model, messages: MESSAGES, ...extra });
}

test('400 from a request the provider rejects: BadRequestError', T, async () => {
    const client = openaiClient();
    const err = await expectError(client.chat.completions.create({ model: CHAT_MODEL }), BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(err.type, 'invalid_request_error');
    if (IS_MOCK) {
        assert.equal(err.param, 'messages');
        assert.equal(err.code, 'missing_required_parameter');
        assert.equal(err.message, "400 Missing required parameter: 'messages'.");
    }
});

const STATUS_CASES = [
    [400, BadRequestError, 'invalid_request_error'],
    [401, AuthenticationError, 'invalid_request_error'],
    [403, PermissionDeniedError, 'invalid_request_error'],
    [404, NotFoundError, 'invalid_request_error'],
    [409, ConflictError, 'invalid_request_error'],
    [422, UnprocessableEntityError, 'invalid_request_error'],
    [429, RateLimitError, 'requests'],
    [500, InternalServerError, 'server_error'],
    [502, InternalServerError, 'server_error'],
    [503, InternalServerError, 'server_error'],
];

for (const [status, Cls, type] of STATUS_CASES) {
    const f = fault('openai', String(status), `status=${status}`);
    test(`${status} -> ${Cls.name}`, { ...T, skip: f ? false : skipReason('openai', String(status)) }, async () => {
        const err = await expectError(chat(f), Cls);
        assert.equal(err.status, status);
        assert.ok(err instanceof APIError);
        assert.equal(typeof err.error.message, 'string');
        assert.ok(err.message.startsWith(`${status} `), err.message);
        assert.ok(err.message.includes(err.error.message));
        if (IS_MOCK) {
            assert.ok(err.message.includes(`aigw-mock fault status=${status}`), err.message);
            assert.equal(err.type, type);
            assert.equal(err.param, null);
            assert.match(err.requestID, /^req_/);
        }
    });
}

{
    const f = fault('openai', '429', 'status=429,retry_after=7');
    test('429 carries Retry-After and x-ratelimit-* headers', { ...T, skip: f ? false : skipReason('openai', '429') }, async () => {
        const err = await expectError(chat(f), RateLimitError);
        assert.match(err.headers.get('retry-after') || '', /^\d+$/);
        assert.equal(err.headers.get('x-ratelimit-remaining-requests'), '0');
        assert.ok(err.headers.get('x-ratelimit-limit-requests'));
        if (IS_MOCK) {
            assert.equal(err.headers.get('retry-after'), '7');
            assert.equal(err.code, 'rate_limit_exceeded');
        }
    });
}

{
    const f = fault('openai', '429', 'status=429');
    test('429 on a streaming request: RateLimitError before any chunk', { ...T, skip: f ? false : skipReason('openai', '429') }, async () => {
        await expectError(chat(f, { stream: true }), RateLimitError);
    });
}

{
    const f = fault('openai', 'RESET', 'reset');
    test('connection reset: APIConnectionError', { ...T, skip: f ? false : skipReason('openai', 'RESET') }, async () => {
        await expectError(chat(f), IS_MOCK ? APIConnectionError : InternalServerError);
    });
}

{
    const f = fault('openai', 'HANG', 'hang');
    test('provider hangs: APIConnectionTimeoutError', { ...T, skip: f ? false : skipReason('openai', 'HANG') }, async () => {
        const started = Date.now();
        await expectError(chat(f, { timeout: 500 }),
            IS_MOCK ? APIConnectionTimeoutError : [APIConnectionTimeoutError, InternalServerError]);
        assert.ok(Date.now() - started >= 450);
    });
}

{
    const f = fault('openai', 'GARBAGE', 'garbage');
    test('non-HTTP bytes: APIConnectionError', { ...T, skip: f ? false : skipReason('openai', 'GARBAGE') }, async () => {
        await expectError(chat(f), IS_MOCK ? APIConnectionError : InternalServerError);
    });
}

{
    const f = fault('openai', 'BADJSON', 'badjson');
    test('broken JSON body with status 200: the call fails', { ...T, skip: f ? false : skipReason('openai', 'BADJSON') }, async () => {
        await expectError(chat(f), [SyntaxError, APIError]);
    });
}

{
    const f = fault('openai', 'CUT', 'cut=3');
    test('stream cut after 3 events: iteration throws, no [DONE]', { ...T, skip: f ? false : skipReason('openai', 'CUT') }, async () => {
        const stream = await chat(f, { stream: true });
        let chunks = 0;
        await assert.rejects(async () => {
            for await (const chunk of stream) {
                assert.ok(chunk);
                chunks++;
            }
        });
        assert.ok(chunks <= 3, `${chunks} chunks`);
    });
}

/*
 * A gateway ends a stream that fails after its status went out with an
 * error event, which the SDK raises as an APIError naming the failure.
 * Against the mock alone a cut is a broken connection (above) and a stall
 * never ends, so these run against a gateway only.
 */

{
    const f = IS_MOCK ? null : fault('openai', 'CUT', 'cut=3');
    test('gateway: a cut stream raises APIError stream_cut', { ...T, skip: f ? false : 'gateway target only' }, async () => {
        const stream = await chat(f, { stream: true });
        let chunks = 0;
        const err = await expectError((async () => {
            for await (const chunk of stream) {
                assert.ok(chunk);
                chunks++;
            }
        })(), APIError);
        assert.equal(chunks, 3);
        assert.equal(err.code, 'stream_cut');
        assert.match(err.message, /stream was cut after 3 event\(s\)/);
    });
}

{
    const f = IS_MOCK ? null : fault('openai', 'STALL', 'stall=2');
    test('gateway: a stalled stream raises APIError stream_stalled', { ...T, skip: f ? false : 'gateway target only' }, async () => {
        const stream = await chat(f, { stream: true });
        let chunks = 0;
        const err = await expectError((async () => {
            for await (const chunk of stream) {
                assert.ok(chunk);
                chunks++;
            }
        })(), APIError);
        assert.equal(chunks, 2);
        assert.equal(err.code, 'stream_stalled');
    });
}

{
    const f = fault('openai', 'STREAM_ERROR', 'stream_error=2');
    test('error event in the middle of a stream: APIError', { ...T, skip: f ? false : skipReason('openai', 'STREAM_ERROR') }, async () => {
        const stream = await chat(f, { stream: true });
        let chunks = 0;
        const err = await expectError((async () => {
            for await (const chunk of stream) {
                assert.ok(chunk);
                chunks++;
            }
        })(), APIError);
        assert.equal(chunks, 2);
        assert.match(err.message, /server had an error/);
        assert.equal(err.type, 'server_error');
    });
}

{
    const f = fault('openai', 'CHUNKED', 'chunked,delay=50');
    test('JSON answer with Transfer-Encoding: chunked, after a delay', { ...T, skip: f ? false : skipReason('openai', 'CHUNKED') }, async () => {
        const res = await chat(f);
        assert.equal(res.choices[0].message.content, mockAnswer(MESSAGES[0].content));
    });
}

{
    const f = fault('openai', 'GZIP', 'gzip');
    test('gzip-encoded JSON answer is decoded', { ...T, skip: f ? false : skipReason('openai', 'GZIP') }, async () => {
        const res = await chat(f);
        assert.equal(res.choices[0].message.content, mockAnswer(MESSAGES[0].content));
    });
}

{
    const f = fault('openai', 'PACE', 'pace=40,words=20');
    test('paced stream: every piece arrives, spread over time', { ...T, skip: f ? false : skipReason('openai', 'PACE') }, async () => {
        const started = Date.now();
        const stream = await chat(f, { stream: true });
        const arrivals = [];
        let text = '';
        for await (const chunk of stream) {
            arrivals.push(Date.now());
            text += chunk.choices[0]?.delta?.content || '';
        }
        assert.equal(text.split(' ').length, 20);
        assert.ok(text.startsWith('Mock answer to: Hello, faulty world. lorem'), text);
        /* role + 7 pieces + finish = 9 events, 8 gaps of 40 ms */
        assert.ok(Date.now() - started >= 8 * 40 - 20, `${Date.now() - started} ms`);
        assert.ok(arrivals[arrivals.length - 1] - arrivals[0] >= 7 * 40 - 20);
    });
}
