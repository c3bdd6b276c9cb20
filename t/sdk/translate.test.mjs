// Translation through the gateway (gateway target only): the official
// OpenAI SDK asking for a model an Anthropic provider serves, the official
// Anthropic SDK asking for one an OpenAI provider serves, and the Vercel AI
// SDK doing the same; answers, usage and errors parse as each client's own.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError as OpenAIBadRequest } from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { generateText, streamText, APICallError } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import {
    IS_MOCK, T, CHAT_MODEL, ANTHROPIC_MODEL, OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
    OPENAI_API_KEY, ANTHROPIC_API_KEY, openaiClient, anthropicClient, mockAnswer,
    expectError,
} from './lib/env.mjs';

const G = { ...T, skip: IS_MOCK ? 'gateway target only: the gateway translates' : false };

test('openai SDK, a model Anthropic serves: a chat completion', G, async () => {
    const prompt = 'Translate me to Anthropic and back, please.';
    const res = await openaiClient().chat.completions.create({
        model: ANTHROPIC_MODEL,
        max_tokens: 200,
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: prompt }],
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, ANTHROPIC_MODEL);
    assert.equal(res.choices[0].message.role, 'assistant');
    assert.equal(res.choices[0].message.content, mockAnswer(prompt));
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.equal(res.usage.completion_tokens, Math.ceil(mockAnswer(prompt).length / 4));
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
});

test('openai SDK, a parameter Anthropic has not: BadRequestError naming it', G, async () => {
    const err = await expectError(openaiClient().chat.completions.create({
        model: ANTHROPIC_MODEL,
        n: 2,
        messages: [{ role: 'user', content: 'hi' }],
    }), OpenAIBadRequest);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'unsupported_parameter');
    assert.match(err.message, /'n' cannot be translated/);
});

test('anthropic SDK, a model OpenAI serves: a message', G, async () => {
    const prompt = 'Translate me to OpenAI and back, please.';
    const res = await anthropicClient().messages.create({
        model: CHAT_MODEL,
        max_tokens: 200,
        system: 'Be brief.',
        messages: [{ role: 'user', content: prompt }],
    });
    assert.equal(res.type, 'message');
    assert.equal(res.role, 'assistant');
    assert.equal(res.model, CHAT_MODEL);
    assert.equal(res.content[0].type, 'text');
    assert.equal(res.content[0].text, mockAnswer(prompt));
    assert.equal(res.stop_reason, 'end_turn');
    assert.equal(res.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('anthropic SDK, a parameter OpenAI has not: BadRequestError naming it', G, async () => {
    const err = await expectError(anthropicClient().messages.create({
        model: CHAT_MODEL,
        max_tokens: 10,
        top_k: 5,
        messages: [{ role: 'user', content: 'hi' }],
    }), Anthropic.BadRequestError);
    assert.equal(err.status, 400);
    assert.match(err.message, /'top_k' cannot be translated/);
});

test('Vercel AI SDK across formats: openai.chat(claude) and anthropic(gpt)', G, async () => {
    const openai = createOpenAI({ baseURL: OPENAI_BASE_URL, apiKey: OPENAI_API_KEY });
    const anthropic = createAnthropic({ baseURL: ANTHROPIC_BASE_URL + '/v1', apiKey: ANTHROPIC_API_KEY });
    for (const model of [openai.chat(ANTHROPIC_MODEL), anthropic(CHAT_MODEL)]) {
        const prompt = `Across formats, ${model.provider}.`;
        const res = await generateText({ model, prompt, maxRetries: 0 });
        assert.equal(res.text, mockAnswer(prompt));
        assert.equal(res.finishReason, 'stop');
        assert.equal(res.usage.outputTokens, Math.ceil(mockAnswer(prompt).length / 4));
    }
    await assert.rejects(generateText({ model: openai.chat(ANTHROPIC_MODEL), prompt: 'hi',
        maxRetries: 0, presencePenalty: 0.5 }), (err) => {
        assert.ok(APICallError.isInstance(err));
        assert.equal(err.statusCode, 400);
        return true;
    });
});

test('openai SDK, a model Anthropic serves: a stream of chunks, usage asked for', G, async () => {
    const prompt = 'Stream me through the translation, please.';
    const stream = await openaiClient().chat.completions.create({
        model: ANTHROPIC_MODEL,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        if (chunk.choices.length) {
            text += chunk.choices[0].delta.content ?? '';
            finish = chunk.choices[0].finish_reason ?? finish;
        }
        usage = chunk.usage ?? usage;
    }
    assert.equal(text, mockAnswer(prompt));
    assert.equal(finish, 'stop');
    assert.equal(usage.completion_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('anthropic SDK, a model OpenAI serves: messages.stream() and finalMessage()', G, async () => {
    const prompt = 'Stream me the other way round, please.';
    const stream = anthropicClient().messages.stream({
        model: CHAT_MODEL,
        max_tokens: 200,
        messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    stream.on('text', (t) => {
        text += t;
    });
    const final = await stream.finalMessage();
    assert.equal(text, mockAnswer(prompt));
    assert.equal(final.content[0].text, mockAnswer(prompt));
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, Math.ceil(mockAnswer(prompt).length / 4));
});

test('Vercel AI SDK across formats, streamed', G, async () => {
    const openai = createOpenAI({ baseURL: OPENAI_BASE_URL, apiKey: OPENAI_API_KEY });
    const anthropic = createAnthropic({ baseURL: ANTHROPIC_BASE_URL + '/v1', apiKey: ANTHROPIC_API_KEY });
    for (const model of [openai.chat(ANTHROPIC_MODEL), anthropic(CHAT_MODEL)]) {
        const prompt = `Streamed across formats, ${model.provider}.`;
        const result = streamText({ model, prompt, maxRetries: 0, maxOutputTokens: 200 });
        let text = '';
        for await (const part of result.textStream) {
            text += part;
        }
        assert.equal(text, mockAnswer(prompt));
        assert.equal(await result.finishReason, 'stop');
        assert.equal((await result.usage).outputTokens, Math.ceil(mockAnswer(prompt).length / 4));
    }
});

test('tool calls across formats, as each SDK parses them, JSON and streams', G, async () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    const messages = [{ role: 'user', content: 'where is bob' }];
    const opts = { headers: { 'x-mock': 'tool' } };

    const res = await openaiClient().chat.completions.create(
        { model: ANTHROPIC_MODEL, tools, messages }, opts);
    assert.equal(res.choices[0].finish_reason, 'tool_calls');
    assert.equal(res.choices[0].message.tool_calls[0].function.name, 'lookup');
    assert.deepEqual(JSON.parse(res.choices[0].message.tool_calls[0].function.arguments), { q: 'where is bob' });

    const stream = openaiClient().chat.completions.stream(
        { model: ANTHROPIC_MODEL, tools, messages }, opts);
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0].message.tool_calls[0].function.name, 'lookup');
    assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { q: 'where is bob' });

    const atools = [{ name: 'lookup', input_schema: { type: 'object' } }];
    const msg = await anthropicClient().messages.create(
        { model: CHAT_MODEL, max_tokens: 100, tools: atools, messages }, opts);
    assert.equal(msg.stop_reason, 'tool_use');
    assert.equal(msg.content[0].type, 'tool_use');
    assert.deepEqual(msg.content[0].input, { q: 'where is bob' });

    const astream = anthropicClient().messages.stream(
        { model: CHAT_MODEL, max_tokens: 100, tools: atools, messages }, opts);
    const afinal = await astream.finalMessage();
    assert.equal(afinal.content[0].type, 'tool_use');
    assert.deepEqual(afinal.content[0].input, { q: 'where is bob' });
});
