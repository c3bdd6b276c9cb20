// The mock provider's own features, seen through the SDKs: request
// introspection, keep-alive accounting, key checks, "times".  Mock target
// only (skipped with AIGW_TARGET=gateway).  Run the files one at a time
// (run.sh does): /_mock/* state is global to the mock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import {
    IS_MOCK, T, CHAT_MODEL, ANTHROPIC_MODEL, OPENAI_API_KEY, ANTHROPIC_API_KEY,
    OPENAI_BASE_URL, ANTHROPIC_BASE_URL, openaiClient, anthropicClient, faultBaseURL,
    expectError, mockControl, mockOrigin, mockAnswer,
} from './lib/env.mjs';

const opts = { ...T, skip: IS_MOCK ? false : 'mock target only' };

test('/_mock/last records the SDK request; keep-alive connections are reused', opts, async () => {
    assert.equal((await mockControl('reset', 'POST')).status, 200);
    assert.equal((await mockControl('last')).status, 404);

    const client = openaiClient();
    for (let i = 0; i < 6; i++) {
        await client.chat.completions.create({
            model: CHAT_MODEL, messages: [{ role: 'user', content: `request ${i}` }],
        });
    }
    const last = await mockControl('last');
    assert.equal(last.status, 200);
    assert.equal(last.body.method, 'POST');
    assert.equal(last.body.path, new URL(OPENAI_BASE_URL).pathname + '/chat/completions');
    assert.equal(last.body.headers.authorization, `Bearer ${OPENAI_API_KEY}`);
    assert.equal(last.body.headers['content-type'], 'application/json');
    assert.ok(last.body.headers['x-stainless-lang'], 'SDK telemetry headers are recorded');
    assert.deepEqual(JSON.parse(last.body.body).messages, [{ role: 'user', content: 'request 5' }]);

    /* fetch keeps a small pool of idle connections and rotates over it */
    const stats = (await mockControl('stats')).body;
    assert.equal(stats.requests, 6);
    assert.ok(stats.connections >= 1 && stats.connections <= 2, JSON.stringify(stats));
});

/* One request over a given keep-alive agent, body drained. */
function get(agent, path) {
    return new Promise((resolve, reject) => {
        const req = http.request(`${mockOrigin()}${path}`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', reject);
        req.end();
    });
}

test('/_mock/stats counts the TCP connections that carried API requests', opts, async () => {
    const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const two = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
        await get(one, '/v1/models');          /* opens a connection before the reset */
        await mockControl('reset', 'POST');
        for (let i = 0; i < 3; i++) {
            assert.equal(await get(one, '/v1/models'), 200);
        }
        assert.deepEqual((await mockControl('stats')).body, { requests: 3, connections: 1 });
        assert.equal(await get(two, '/anything/v1/models/gpt-4o'), 200);
        assert.equal(await get(one, '/v1/models'), 200);
        assert.deepEqual((await mockControl('stats')).body, { requests: 5, connections: 2 });
    } finally {
        one.destroy();
        two.destroy();
    }
});

test('Anthropic SDK credentials and version header reach the provider', opts, async () => {
    await anthropicClient().messages.create({
        model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'headers?' }],
    });
    const last = (await mockControl('last')).body;
    assert.equal(last.path, new URL(ANTHROPIC_BASE_URL).pathname.replace(/\/$/, '') + '/v1/messages');
    /* @anthropic-ai/sdk >= 1 sends the API key as "Authorization: Bearer", older ones as x-api-key */
    const key = last.headers['x-api-key'] || (last.headers.authorization || '').replace(/^Bearer /, '');
    assert.equal(key, ANTHROPIC_API_KEY);
    assert.match(last.headers['anthropic-version'], /^\d{4}-\d{2}-\d{2}$/);
});

test('key=K: the provider checks its credential', opts, async () => {
    const baseURL = faultBaseURL(OPENAI_BASE_URL, 'key=sk-provider-0123456789');
    const good = openaiClient({ baseURL, apiKey: 'sk-provider-0123456789' });
    const res = await good.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'k' }] });
    assert.equal(res.choices[0].message.content, mockAnswer('k'));

    const bad = openaiClient({ baseURL, apiKey: 'sk-wrong-0123456789' });
    const err = await expectError(bad.chat.completions.create({
        model: CHAT_MODEL, messages: [{ role: 'user', content: 'k' }],
    }), OpenAI.AuthenticationError);
    assert.equal(err.code, 'invalid_api_key');
    assert.ok(!err.message.includes('sk-wrong-0123456789'), 'the key is masked');

    const anthropic = anthropicClient({
        baseURL: faultBaseURL(ANTHROPIC_BASE_URL, 'key=ak-provider'), apiKey: 'ak-wrong',
    });
    const aerr = await expectError(anthropic.messages.create({
        model: ANTHROPIC_MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'k' }],
    }), (await import('@anthropic-ai/sdk')).default.AuthenticationError);
    assert.equal(aerr.type, 'authentication_error');
});

test('times=N: the fault applies to the first N requests only', opts, async () => {
    await mockControl('reset', 'POST');
    const client = openaiClient({ baseURL: faultBaseURL(OPENAI_BASE_URL, 'status=503,times=2') });
    const req = () => client.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 't' }] });
    await expectError(req(), OpenAI.InternalServerError);
    await expectError(req(), OpenAI.InternalServerError);
    const ok = await req();
    assert.equal(ok.choices[0].message.content, mockAnswer('t'));
});

test('x-mock header works as a fallback to the path', opts, async () => {
    const client = new OpenAI({
        baseURL: OPENAI_BASE_URL, apiKey: OPENAI_API_KEY, maxRetries: 0,
        defaultHeaders: { 'x-mock': 'status=418' },
    });
    const err = await expectError(client.chat.completions.create({
        model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }],
    }), OpenAI.APIError);
    assert.equal(err.status, 418);
});

test('an unknown fault option is refused loudly', opts, async () => {
    const client = openaiClient({ baseURL: faultBaseURL(OPENAI_BASE_URL, 'stauts=500') });
    const err = await expectError(client.chat.completions.create({
        model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }],
    }), OpenAI.BadRequestError);
    assert.match(err.message, /unknown fault option 'stauts'/);
});
