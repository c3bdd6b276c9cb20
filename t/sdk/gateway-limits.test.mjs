// The gateway's own limits, as the official SDKs see them: the 429 of a
// limit is each SDK's RateLimitError with the body parsed, Retry-After
// given, and the x-ratelimit-* (anthropic-ratelimit-*) headers readable on
// every answer.  Only against the gateway (t/sdk/gateway.sh sets
// AIGW_LIMITED_BASE_URL: a tenant allowed one request a minute).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { T, CHAT_MODEL, ANTHROPIC_MODEL, openaiClient, anthropicClient } from './lib/env.mjs';

const env = process.env;
const OPENAI_URL = env.AIGW_LIMITED_BASE_URL;
const ANTHROPIC_URL = env.AIGW_LIMITED_ANTHROPIC_BASE_URL;
const skip = OPENAI_URL ? false : 'gateway target only (AIGW_LIMITED_BASE_URL)';

test('openai: a limit is RateLimitError, the headers readable', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    const messages = [{ role: 'user', content: 'hi' }];

    const { data, response } = await client.chat.completions
        .create({ model: CHAT_MODEL, messages }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '1');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(response.headers.get('x-ratelimit-reset-requests'), /^\d+s$/);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '100000');

    let err;
    try {
        await client.chat.completions.create({ model: CHAT_MODEL, messages });
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof OpenAI.RateLimitError, `got ${err}`);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.type, 'rate_limit_error');
    assert.match(err.message, /^429 Rate limit reached for tenant `sdk-openai` on requests per minute\. Try again in \d+s\.$/);
    assert.match(err.headers['retry-after'] ?? err.headers.get?.('retry-after'), /^\d+$/);
});

test('openai: a stream refused is RateLimitError before any event', { ...T, skip }, async () => {
    const client = openaiClient({ baseURL: OPENAI_URL });
    await assert.rejects(
        client.chat.completions.create({
            model: CHAT_MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }],
        }),
        OpenAI.RateLimitError);
});

test('anthropic: a limit is RateLimitError, its headers readable', { ...T, skip }, async () => {
    const client = anthropicClient({ baseURL: ANTHROPIC_URL });
    const req = { model: ANTHROPIC_MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'hi' }] };

    const { data, response } = await client.messages.create(req).withResponse();
    assert.equal(data.type, 'message');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-limit'), '1');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-remaining'), '0');
    assert.match(response.headers.get('anthropic-ratelimit-requests-reset'),
                 /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    let err;
    try {
        await client.messages.create(req);
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof Anthropic.RateLimitError, `got ${err}`);
    assert.equal(err.status, 429);
    assert.equal(err.error?.type, 'error');
    assert.equal(err.error?.error?.type, 'rate_limit_error');
});
