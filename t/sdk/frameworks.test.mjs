// The frameworks built on the SDKs, unchanged, against AIGW_BASE_URL: the
// Vercel AI SDK (openai(model) speaks the Responses API, openai.chat(model)
// chat completions, anthropic(model) messages) and LangChain.js (ChatOpenAI,
// ChatAnthropic): answers, streams, usage and errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateText, streamText, APICallError } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { ChatAnthropic } from '@langchain/anthropic';
import {
    IS_MOCK, T, CHAT_MODEL, ANTHROPIC_MODEL, OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
    OPENAI_API_KEY, ANTHROPIC_API_KEY, TIMEOUT_MS, mockAnswer, fault, skipReason,
} from './lib/env.mjs';

function vercelOpenAI(over = {}) {
    return createOpenAI({
        baseURL: over.baseURL || OPENAI_BASE_URL,
        apiKey: over.apiKey || OPENAI_API_KEY,
    });
}

function vercelAnthropic(over = {}) {
    return createAnthropic({
        baseURL: (over.baseURL || ANTHROPIC_BASE_URL) + '/v1',
        apiKey: over.apiKey || ANTHROPIC_API_KEY,
    });
}

function chatOpenAI(over = {}) {
    return new ChatOpenAI({
        model: over.model || CHAT_MODEL,
        apiKey: over.apiKey || OPENAI_API_KEY,
        configuration: { baseURL: over.baseURL || OPENAI_BASE_URL },
        maxRetries: 0,
        timeout: TIMEOUT_MS,
    });
}

function chatAnthropic(over = {}) {
    return new ChatAnthropic({
        model: over.model || ANTHROPIC_MODEL,
        apiKey: over.apiKey || ANTHROPIC_API_KEY,
        anthropicApiUrl: over.baseURL || ANTHROPIC_BASE_URL,
        maxRetries: 0,
        maxTokens: 256,
    });
}

/* the text and the error of a streamText, from its full stream */
async function drain(result) {
    let text = '';
    let error = null;
    for await (const part of result.fullStream) {
        if (part.type === 'text-delta') {
            text += part.text;
        } else if (part.type === 'error') {
            error = part.error;
        }
    }
    return { text, error };
}

const MODELS = [
    ['openai(model): the Responses API', () => vercelOpenAI()(CHAT_MODEL)],
    ['openai.chat(model): chat completions', () => vercelOpenAI().chat(CHAT_MODEL)],
    ['anthropic(model): messages', () => vercelAnthropic()(ANTHROPIC_MODEL)],
];

for (const [name, model] of MODELS) {
    test(`Vercel AI SDK ${name}: generateText`, T, async () => {
        const prompt = `Say something about ${name.split(':')[0]}, please.`;
        const res = await generateText({ model: model(), prompt, maxRetries: 0 });
        assert.equal(res.text, mockAnswer(prompt));
        assert.equal(res.finishReason, 'stop');
        assert.equal(res.usage.outputTokens, Math.ceil(mockAnswer(prompt).length / 4));
        assert.ok(res.usage.inputTokens > 0);
    });

    test(`Vercel AI SDK ${name}: streamText`, T, async () => {
        const prompt = `Stream something about ${name.split(':')[0]}.`;
        const result = streamText({ model: model(), prompt, maxRetries: 0 });
        const { text, error } = await drain(result);
        assert.equal(error, null);
        assert.equal(text, mockAnswer(prompt));
        const usage = await result.usage;
        assert.equal(usage.outputTokens, Math.ceil(mockAnswer(prompt).length / 4));
        assert.equal(await result.finishReason, 'stop');
    });
}

const GATEWAY_ONLY = { ...T, skip: IS_MOCK ? 'gateway target only: its own errors' : false };

test("Vercel AI SDK: the gateway's 404 for an unknown model is an APICallError", GATEWAY_ONLY, async () => {
    for (const model of [vercelOpenAI()('no-such-model'), vercelOpenAI().chat('no-such-model'),
        vercelAnthropic()('no-such-model')]) {
        await assert.rejects(generateText({ model, prompt: 'hi', maxRetries: 0 }), (err) => {
            assert.ok(APICallError.isInstance(err), err.constructor.name);
            assert.equal(err.statusCode, 404);
            assert.match(err.message, /no-such-model/);
            assert.equal(err.isRetryable, false);
            return true;
        });
    }
});

{
    const f = fault('openai', '429', 'status=429,retry_after=7');
    test('Vercel AI SDK: a 429 is an APICallError, retryable', { ...T, skip: f ? false : skipReason('openai', '429') }, async () => {
        const model = vercelOpenAI({ baseURL: f.baseURL, apiKey: f.apiKey }).chat(f.model);
        await assert.rejects(generateText({ model, prompt: 'hi', maxRetries: 0 }), (err) => {
            assert.ok(APICallError.isInstance(err), err.constructor.name);
            assert.equal(err.statusCode, 429);
            assert.equal(err.isRetryable, true);
            return true;
        });
    });
}

{
    const f = fault('openai', 'CUT', 'cut=3');
    test('Vercel AI SDK: a cut stream is an error, never a clean end', { ...T, skip: f ? false : skipReason('openai', 'CUT') }, async () => {
        const model = vercelOpenAI({ baseURL: f.baseURL, apiKey: f.apiKey }).chat(f.model);
        const result = streamText({ model, prompt: 'a long answer, please', maxRetries: 0,
            onError: () => {} });
        let failed = false;
        try {
            const { error } = await drain(result);
            failed = error !== null;
        } catch {
            failed = true;
        }
        assert.ok(failed, 'the stream failed');
    });
}

{
    const f = fault('anthropic', 'STREAM_ERROR', 'stream_error=3');
    test('Vercel AI SDK: an Anthropic error event ends the stream with an error', { ...T, skip: f ? false : skipReason('anthropic', 'STREAM_ERROR') }, async () => {
        const model = vercelAnthropic({ baseURL: f.baseURL, apiKey: f.apiKey })(f.model);
        const { error } = await drain(streamText({ model, prompt: 'hi there', maxRetries: 0,
            onError: () => {} }));
        assert.ok(error, 'an error part');
    });
}

test('LangChain ChatOpenAI: invoke, usage_metadata', T, async () => {
    const prompt = 'What does LangChain do, in short?';
    const msg = await chatOpenAI().invoke(prompt);
    assert.equal(msg.content, mockAnswer(prompt));
    assert.equal(msg.usage_metadata.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    assert.equal(msg.usage_metadata.total_tokens,
        msg.usage_metadata.input_tokens + msg.usage_metadata.output_tokens);
});

test('LangChain ChatOpenAI: stream, usage in the last chunk', T, async () => {
    const prompt = 'Stream a LangChain answer.';
    let text = '';
    let usage;
    for await (const chunk of await chatOpenAI().stream(prompt)) {
        text += chunk.content;
        usage = chunk.usage_metadata || usage;
    }
    assert.equal(text, mockAnswer(prompt));
    assert.equal(usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('LangChain ChatAnthropic: invoke and stream', T, async () => {
    const prompt = 'What does Anthropic make?';
    const msg = await chatAnthropic().invoke(prompt);
    assert.equal(msg.content, mockAnswer(prompt));
    assert.equal(msg.usage_metadata.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));

    let text = '';
    for await (const chunk of await chatAnthropic().stream(prompt)) {
        text += typeof chunk.content === 'string' ? chunk.content
            : chunk.content.map((c) => c.text || '').join('');
    }
    assert.equal(text, mockAnswer(prompt));
});

test("LangChain: the gateway's 404 for an unknown model is an error with status 404", GATEWAY_ONLY, async () => {
    for (const llm of [chatOpenAI({ model: 'no-such-model' }), chatAnthropic({ model: 'no-such-model' })]) {
        await assert.rejects(llm.invoke('hi'), (err) => {
            assert.equal(err.status, 404, `${err.constructor.name}: ${err.message}`);
            assert.match(err.message, /no-such-model/);
            return true;
        });
    }
});

{
    const f = fault('anthropic', '429', 'status=429,retry_after=9');
    test('LangChain ChatAnthropic: a 429 is an error with status 429', { ...T, skip: f ? false : skipReason('anthropic', '429') }, async () => {
        await assert.rejects(chatAnthropic({ baseURL: f.baseURL, apiKey: f.apiKey, model: f.model }).invoke('hi'),
            (err) => {
                assert.equal(err.status, 429, `${err.constructor.name}: ${err.message}`);
                return true;
            });
    });
}
