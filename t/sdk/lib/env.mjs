// Shared configuration of the SDK compatibility tests: every knob comes from
// the environment so that the same tests run against the mock provider
// directly (AIGW_TARGET=mock, the default) or against aigw in front of it
// (AIGW_TARGET=gateway).  See t/sdk/README.md for the list.

import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const env = process.env;

function trimSlash(url) {
    return url.replace(/\/+$/, '');
}

export const TARGET = (env.AIGW_TARGET || 'mock').toLowerCase();
if (TARGET !== 'mock' && TARGET !== 'gateway') {
    throw new Error(`AIGW_TARGET must be "mock" or "gateway", not "${TARGET}"`);
}
export const IS_MOCK = TARGET === 'mock';

export const OPENAI_BASE_URL = trimSlash(env.AIGW_BASE_URL || 'http://127.0.0.1:8081/v1');
export const ANTHROPIC_BASE_URL = trimSlash(env.AIGW_ANTHROPIC_BASE_URL
    || OPENAI_BASE_URL.replace(/\/v1$/, ''));

export const OPENAI_API_KEY = env.AIGW_API_KEY || 'sk-aigw-test-key';
export const ANTHROPIC_API_KEY = env.AIGW_ANTHROPIC_API_KEY || OPENAI_API_KEY;

export const CHAT_MODEL = env.AIGW_MODEL || 'gpt-4o-mini';
export const COMPLETION_MODEL = env.AIGW_COMPLETION_MODEL || 'gpt-3.5-turbo-instruct';
export const EMBEDDING_MODEL = env.AIGW_EMBEDDING_MODEL || 'text-embedding-3-small';
export const ANTHROPIC_MODEL = env.AIGW_ANTHROPIC_MODEL || 'claude-haiku-4-5';

export const TIMEOUT_MS = Number(env.AIGW_TEST_TIMEOUT_MS || 10000);

/* node:test options for every test: bounded, so that a hung target fails fast */
export const T = { timeout: TIMEOUT_MS * 3 };

export function openaiClient(over = {}) {
    return new OpenAI({
        baseURL: over.baseURL || OPENAI_BASE_URL,
        apiKey: over.apiKey || OPENAI_API_KEY,
        maxRetries: 0,
        timeout: over.timeout || TIMEOUT_MS,
    });
}

export function anthropicClient(over = {}) {
    return new Anthropic({
        baseURL: over.baseURL || ANTHROPIC_BASE_URL,
        apiKey: over.apiKey || ANTHROPIC_API_KEY,
        maxRetries: 0,
        timeout: over.timeout || TIMEOUT_MS,
    });
}

/* The mock's deterministic answer and token estimate (docs/mock-provider.md). */
export function mockAnswer(prompt) {
    return 'Mock answer to: ' + prompt.slice(0, 40);
}

export function mockTokens(chars) {
    return Math.max(1, Math.ceil(chars / 4));
}

/*
 * "/fault/<options>" inserted before the trailing /v1 of an OpenAI base URL,
 * or appended to an Anthropic base URL (the SDK adds /v1/messages itself).
 */
export function faultBaseURL(base, options) {
    const u = new URL(base);
    const path = u.pathname.replace(/\/+$/, '');
    const seg = '/fault/' + options;
    u.pathname = path.endsWith('/v1') ? path.slice(0, -3) + seg + '/v1' : path + seg;
    return trimSlash(u.toString());
}

/*
 * Where a fault test sends its request.  NAME is the case ("429", "RESET",
 * ...), OPTIONS the mock's fault options used when talking to the mock
 * directly.  Overrides, for a gateway configured with a faulty provider:
 *   AIGW_FAULT_BASE_URL_<NAME>, AIGW_FAULT_MODEL_<NAME>, AIGW_FAULT_API_KEY_<NAME>
 *   (Anthropic: AIGW_ANTHROPIC_FAULT_BASE_URL_<NAME>, ..._MODEL_<NAME>, ..._API_KEY_<NAME>)
 * Returns null (test skipped) when talking to a gateway with no override.
 */
export function fault(wire, name, options) {
    const p = wire === 'anthropic' ? 'AIGW_ANTHROPIC_FAULT_' : 'AIGW_FAULT_';
    const baseURL = env[`${p}BASE_URL_${name}`];
    const model = env[`${p}MODEL_${name}`];
    const apiKey = env[`${p}API_KEY_${name}`];
    const base = wire === 'anthropic' ? ANTHROPIC_BASE_URL : OPENAI_BASE_URL;
    const defModel = wire === 'anthropic' ? ANTHROPIC_MODEL : CHAT_MODEL;
    if (!baseURL && !model && !apiKey) {
        if (!IS_MOCK) {
            return null;
        }
        return { baseURL: faultBaseURL(base, options), model: defModel, apiKey: undefined };
    }
    return { baseURL: baseURL ? trimSlash(baseURL) : base, model: model || defModel, apiKey };
}

export function skipReason(wire, name) {
    const p = wire === 'anthropic' ? 'AIGW_ANTHROPIC_FAULT_' : 'AIGW_FAULT_';
    return `gateway target: set ${p}BASE_URL_${name} or ${p}MODEL_${name} to run`;
}

/* Awaits a rejection and checks it is an instance of one of `classes`. */
export async function expectError(promise, classes) {
    const list = Array.isArray(classes) ? classes : [classes];
    let caught = null;
    try {
        await promise;
    } catch (err) {
        caught = err;
    }
    assert.ok(caught, 'expected an error, the call succeeded');
    assert.ok(list.some((C) => caught instanceof C),
        `expected ${list.map((C) => C.name).join(' or ')}, got ${caught && caught.constructor.name}: ${caught && caught.message}`);
    return caught;
}

/* Mock introspection (mock target only). */
export function mockOrigin() {
    return new URL(OPENAI_BASE_URL).origin;
}

export async function mockControl(name, method = 'GET') {
    const res = await fetch(`${mockOrigin()}/_mock/${name}`, { method });
    return { status: res.status, body: await res.json() };
}
