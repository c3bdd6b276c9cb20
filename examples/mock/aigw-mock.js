#!/usr/bin/env node
'use strict';
/*
 * aigw-mock — a mock LLM provider for aigw's tests, demo and benchmark.
 *
 * Speaks the OpenAI HTTP API (chat/completions, completions, embeddings, models)
 * and the Anthropic one (messages, messages/count_tokens, models) in the shapes
 * the real services return, answers deterministically from the request, and
 * misbehaves on demand (errors, resets, hangs, garbage, cut streams, delays).
 *
 *   node examples/mock/aigw-mock.js --port 8081 [--host 127.0.0.1]
 *
 * Node >= 18, no dependencies.  Full reference: docs/mock-provider.md.
 */

const cluster = require('node:cluster');
const http = require('node:http');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const fs = require('node:fs');

/* ------------------------------------------------------------------ limits */

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const MAX_WORDS = 100000;
const MAX_CHOICES = 16;
const MAX_EMBEDDING_INPUTS = 2048;
const MAX_EMBEDDING_DIMS = 8192;
const MAX_TIMES_KEYS = 10000;
const SNIPPET_CHARS = 40;
const WORDS_PER_PIECE = 3;
const SYSTEM_FINGERPRINT = 'fp_6d5f2b1c0e';
const ANTHROPIC_ORG_ID = '1f4c2a7e-0b3d-4e5f-9a8b-7c6d5e4f3a2b';

const FILLER = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur',
    'adipiscing', 'elit', 'sed', 'do', 'eiusmod', 'tempor'];

const OPENAI_MODELS = [
    ['gpt-4o', 1715367049], ['gpt-4o-mini', 1721172741],
    ['gpt-4.1', 1744316542], ['gpt-4.1-mini', 1744318173],
    ['o3-mini', 1737146383], ['gpt-3.5-turbo-instruct', 1692901427],
    ['text-embedding-3-small', 1705948997],
    ['text-embedding-3-large', 1705953180],
];

const ANTHROPIC_MODELS = [
    ['claude-opus-4-5-20251101', 'Claude Opus 4.5', '2025-11-01T00:00:00Z'],
    ['claude-sonnet-4-5-20250929', 'Claude Sonnet 4.5', '2025-09-29T00:00:00Z'],
    ['claude-haiku-4-5-20251001', 'Claude Haiku 4.5', '2025-10-01T00:00:00Z'],
];

/* ------------------------------------------------------------- fault options
 *
 * Given as one path segment after a "fault" segment, anywhere before the API
 * path (/fault/status=503,retry_after=7/v1/chat/completions), or in an
 * "x-mock" request header; path options override header options.
 */

const OPTIONS = {
    status:       { kind: 'int', min: 400, max: 599 },
    retry_after:  { kind: 'int', min: 0, max: 86400 },
    reset:        { kind: 'flag' },
    tool:         { kind: 'flag' },
    hang:         { kind: 'flag' },
    garbage:      { kind: 'flag' },
    badjson:      { kind: 'flag' },
    html:         { kind: 'flag' },
    notjson:      { kind: 'flag' },
    cut:          { kind: 'int', min: 0, max: 1000000, bare: 0 },
    stream_error: { kind: 'int', min: 0, max: 1000000 },
    delay:        { kind: 'int', min: 0, max: 600000 },
    pace:         { kind: 'int', min: 0, max: 60000 },
    first:        { kind: 'int', min: 0, max: 600000 },
    firstat:      { kind: 'int', min: 0, max: 1000000 },
    stall:        { kind: 'int', min: 0, max: 1000000 },
    context:      { kind: 'int', min: 1, max: 100000000 },
    splitat:      { kind: 'int', min: 0, max: 100000000 },
    splitat2:     { kind: 'int', min: 0, max: 100000000 },
    piece:        { kind: 'int', min: 1, max: MAX_WORDS },
    chars:        { kind: 'int', min: 1, max: 100000000 },
    bigword:      { kind: 'int', min: 1, max: 10000000 },
    chunked:      { kind: 'flag' },
    close:        { kind: 'flag' },
    gzip:         { kind: 'flag' },
    words:        { kind: 'int', min: 0, max: MAX_WORDS },
    cached:       { kind: 'int', min: 0, max: 100000000 },
    cache_write:  { kind: 'int', min: 0, max: 100000000 },
    reasoning:    { kind: 'int', min: 0, max: 100000000 },
    key:          { kind: 'string' },
    times:        { kind: 'int', min: 1, max: 1000000000 },
};

/* Options that still apply once a "times=N" budget is used up. */
const PERSISTENT_OPTIONS = ['words', 'cached', 'cache_write', 'reasoning', 'key'];

function parseOptionString(str, into) {
    const items = str.split(',');
    for (let i = 0; i < items.length; i++) {
        const item = items[i].trim();
        if (item === '') {
            continue;
        }
        const eq = item.indexOf('=');
        const name = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
        const value = eq < 0 ? null : item.slice(eq + 1).trim();
        const spec = OPTIONS[name];
        if (!spec) {
            return `aigw-mock: unknown fault option '${name}'`;
        }
        if (spec.kind === 'flag') {
            if (value === null || value === '1' || value === 'true') {
                into[name] = true;
            } else if (value === '0' || value === 'false') {
                delete into[name];
            } else {
                return `aigw-mock: option '${name}' takes no value (or 0/1)`;
            }
        } else if (spec.kind === 'int') {
            if (value === null && spec.bare !== undefined) {
                into[name] = spec.bare;
                continue;
            }
            if (value === null || !/^[0-9]{1,10}$/.test(value)) {
                return `aigw-mock: option '${name}' needs an integer value`;
            }
            const n = Number(value);
            if (n < spec.min || n > spec.max) {
                return `aigw-mock: option '${name}' must be between ${spec.min} and ${spec.max}`;
            }
            into[name] = n;
        } else {
            if (value === null || value === '') {
                return `aigw-mock: option '${name}' needs a value`;
            }
            into[name] = value;
        }
    }
    return null;
}

/*
 * Splits "/prefix/fault/<options>/v1/chat/completions" into the API path
 * without the fault segments and the list of option strings found.
 */
function extractFaultSegments(path) {
    const segs = path.split('/');
    const kept = [];
    const specs = [];
    for (let i = 0; i < segs.length; i++) {
        if (segs[i] === 'fault' && i + 2 < segs.length) {
            specs.push(segs[i + 1]);
            i++;
            continue;
        }
        kept.push(segs[i]);
    }
    return { apiPath: kept.join('/') || '/', specs };
}

function resolveOptions(specs, header) {
    const opts = {};
    const sources = [];
    if (typeof header === 'string' && header !== '') {
        sources.push(header);
    }
    for (const s of specs) {
        try {
            sources.push(decodeURIComponent(s));
        } catch {
            return { error: `aigw-mock: bad percent-encoding in fault segment '${s}'` };
        }
    }
    for (const src of sources) {
        const err = parseOptionString(src, opts);
        if (err) {
            return { error: err };
        }
    }
    return { opts, key: sources.join('|') };
}

/* ------------------------------------------------------------------ state */

const state = {
    last: null,
    requests: 0,
    connections: 0,
    epoch: 0,
    times: new Map(),
};

const sockets = new Set();
const timers = new Set();
let connectionSeq = 0;
let shuttingDown = false;
let verbose = false;
let recordFile = null;      /* --record: every API request, a JSON line */

function resetState() {
    state.last = null;
    state.requests = 0;
    state.connections = 0;
    state.epoch++;
    state.times.clear();
}

/* Applies the "times=N" budget: past it, only persistent options remain. */
function applyTimes(opts, key) {
    if (opts.times === undefined) {
        return opts;
    }
    const used = state.times.get(key) || 0;
    if (state.times.size >= MAX_TIMES_KEYS && !state.times.has(key)) {
        state.times.clear();
    }
    state.times.set(key, used + 1);
    if (used < opts.times) {
        return opts;
    }
    const kept = {};
    for (const name of PERSISTENT_OPTIONS) {
        if (opts[name] !== undefined) {
            kept[name] = opts[name];
        }
    }
    return kept;
}

function sleep(ms) {
    if (!ms) {
        return Promise.resolve();
    }
    return new Promise((resolve) => {
        const t = setTimeout(() => {
            timers.delete(t);
            resolve();
        }, ms);
        timers.add(t);
    });
}

/* ---------------------------------------------------------------- helpers */

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomBase62(len) {
    const bytes = crypto.randomBytes(len);
    let s = '';
    for (let i = 0; i < len; i++) {
        s += BASE62[bytes[i] % 62];
    }
    return s;
}

function nowSeconds() {
    return Math.floor(Date.now() / 1000);
}

function countTokens(chars) {
    return chars <= 0 ? 0 : Math.ceil(chars / 4);
}

/* Text pieces of an OpenAI or Anthropic message "content" (string or parts). */
function textParts(content, out) {
    if (typeof content === 'string') {
        out.push(content);
    } else if (Array.isArray(content)) {
        for (const part of content) {
            if (part && typeof part.text === 'string') {
                out.push(part.text);
            } else if (part && part.type === 'tool_result') {
                /* one level of nesting: tool results carry their own content */
                if (typeof part.content === 'string') {
                    out.push(part.content);
                } else if (Array.isArray(part.content)) {
                    for (const inner of part.content) {
                        if (inner && typeof inner.text === 'string') {
                            out.push(inner.text);
                        }
                    }
                }
            }
        }
    }
    return out;
}

function sumLength(parts) {
    let n = 0;
    for (const p of parts) {
        n += p.length;
    }
    return n;
}

/*
 * The deterministic answer: "Mock answer to: <first 40 chars of the prompt>",
 * or exactly `words` words when the words option is given (the answer's own
 * words first, then filler).
 */
function makeAnswer(promptText, words, bigword) {
    const base = 'Mock answer to: ' + promptText.slice(0, SNIPPET_CHARS)
        + (bigword ? ' ' + 'x'.repeat(bigword) : '');
    if (words === undefined) {
        return base;
    }
    const baseWords = base.split(/\s+/).filter((w) => w !== '');
    const out = [];
    for (let i = 0; i < words; i++) {
        out.push(i < baseWords.length ? baseWords[i]
            : FILLER[(i - baseWords.length) % FILLER.length]);
    }
    return out.join(' ');
}

/*
 * A conversation that ends with an assistant message (a prefill) is
 * continued: the answer is what follows that text in the answer to the
 * last user message, when the answer starts with it.
 */
function continuePrefill(answer, messages) {
    const last = messages[messages.length - 1];
    if (!isObject(last) || last.role !== 'assistant') {
        return answer;
    }
    const prefill = textParts(last.content, []).join(' ');
    return prefill !== '' && answer.startsWith(prefill) ? answer.slice(prefill.length) : answer;
}

/* Applies max_tokens: returns { text, tokens, truncated }. */
function limitAnswer(answer, maxTokens) {
    const tokens = countTokens(answer.length);
    if (Number.isInteger(maxTokens) && maxTokens >= 1 && tokens > maxTokens) {
        return { text: answer.slice(0, maxTokens * 4), tokens: maxTokens, truncated: true };
    }
    return { text: answer, tokens, truncated: false };
}

/*
 * Splits the answer into stream pieces of a few words (`per`, default
 * WORDS_PER_PIECE), keeping all spaces; or of `chars` characters.
 */
function splitPieces(text, per, chars) {
    const pieces = [];
    if (chars) {
        /* pieces of that many characters, words cut anywhere */
        const cps = Array.from(text);
        for (let i = 0; i < cps.length; i += chars) {
            pieces.push(cps.slice(i, i + chars).join(''));
        }
        return pieces;
    }
    const words = text.match(/\s*\S+\s*/g) || [];
    const n = per || WORDS_PER_PIECE;
    for (let i = 0; i < words.length; i += n) {
        pieces.push(words.slice(i, i + n).join(''));
    }
    return pieces;
}

function sseData(obj) {
    return 'data: ' + (typeof obj === 'string' ? obj : JSON.stringify(obj)) + '\n\n';
}

function sseEvent(type, obj) {
    return 'event: ' + type + '\n' + 'data: ' + JSON.stringify(obj) + '\n\n';
}

function isObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/* ----------------------------------------------------------------- errors */

const OPENAI_ERRORS = {
    400: ['invalid_request_error', null, 'Bad request.'],
    401: ['invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.'],
    403: ['invalid_request_error', 'permission_denied', 'You are not allowed to access this resource.'],
    404: ['invalid_request_error', 'model_not_found', 'The model does not exist or you do not have access to it.'],
    409: ['invalid_request_error', 'conflict', 'The request conflicts with the current state of the resource.'],
    413: ['invalid_request_error', 'request_too_large', 'The request is too large.'],
    422: ['invalid_request_error', null, 'The request could not be processed.'],
    429: ['requests', 'rate_limit_exceeded', 'Rate limit reached for requests per min (RPM).'],
    500: ['server_error', null, 'The server had an error while processing your request. Sorry about that!'],
    502: ['server_error', null, 'Bad gateway.'],
    503: ['server_error', null, 'The engine is currently overloaded, please try again later.'],
    504: ['server_error', null, 'Gateway timeout.'],
};

const ANTHROPIC_ERRORS = {
    400: ['invalid_request_error', 'Bad request.'],
    401: ['authentication_error', 'invalid x-api-key'],
    402: ['billing_error', 'Your credit balance is too low to access the Anthropic API.'],
    403: ['permission_error', 'Your API key does not have permission to use the specified resource.'],
    404: ['not_found_error', 'The requested resource could not be found.'],
    413: ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'],
    429: ['rate_limit_error', 'This request would exceed the rate limit for your organization.'],
    500: ['api_error', 'Internal server error'],
    504: ['timeout_error', 'Request timed out'],
    529: ['overloaded_error', 'Overloaded'],
};

const REASONS = { 529: 'Site Overloaded' };

function openaiError(status, message, type, param, code) {
    const d = OPENAI_ERRORS[status] || [status >= 500 ? 'server_error' : 'invalid_request_error', null, 'Error.'];
    return {
        error: {
            message: message || d[2],
            type: type || d[0],
            param: param === undefined ? null : param,
            code: code === undefined ? d[1] : code,
        },
    };
}

function anthropicError(status, message, type) {
    const d = ANTHROPIC_ERRORS[status] || [status >= 500 ? 'api_error' : 'invalid_request_error', 'Error.'];
    return {
        type: 'error',
        error: { type: type || d[0], message: message || d[1] },
        request_id: 'req_' + randomBase62(24),
    };
}

/* --------------------------------------------------------------- response */

function commonHeaders(ctx, status) {
    const h = {};
    const limited = status === 429;
    const retry = ctx.opts.retry_after !== undefined ? ctx.opts.retry_after : 1;
    if (ctx.wire === 'anthropic') {
        const reset = new Date(Date.now() + (limited ? retry * 1000 : 1000)).toISOString().replace(/\.\d+Z$/, 'Z');
        h['request-id'] = 'req_' + randomBase62(24);
        h['anthropic-organization-id'] = ANTHROPIC_ORG_ID;
        h['anthropic-ratelimit-requests-limit'] = '4000';
        h['anthropic-ratelimit-requests-remaining'] = limited ? '0' : '3999';
        h['anthropic-ratelimit-requests-reset'] = reset;
        h['anthropic-ratelimit-tokens-limit'] = '2000000';
        h['anthropic-ratelimit-tokens-remaining'] = limited ? '0' : '1999000';
        h['anthropic-ratelimit-tokens-reset'] = reset;
    } else {
        h['x-request-id'] = 'req_' + crypto.randomBytes(16).toString('hex');
        h['openai-organization'] = 'org-aigwmock';
        h['openai-processing-ms'] = String(Date.now() - ctx.start);
        h['openai-version'] = '2020-10-01';
    }
    if (ctx.wire !== 'anthropic' || limited) {
        h['x-ratelimit-limit-requests'] = '10000';
        h['x-ratelimit-limit-tokens'] = '10000000';
        h['x-ratelimit-remaining-requests'] = limited ? '0' : '9999';
        h['x-ratelimit-remaining-tokens'] = limited ? '0' : '9999000';
        h['x-ratelimit-reset-requests'] = limited ? `${retry}s` : '6ms';
        h['x-ratelimit-reset-tokens'] = limited ? `${retry}s` : '0s';
    }
    if (limited || ctx.opts.retry_after !== undefined) {
        h['retry-after'] = String(retry);
    }
    if (ctx.opts.close) {
        h['connection'] = 'close';
    }
    return h;
}

function writeHead(res, status, headers) {
    res.writeHead(status, REASONS[status] || http.STATUS_CODES[status] || 'Unknown', headers);
}

/* Waits until the response can take more data, or is gone. */
function drained(res) {
    return new Promise((resolve) => {
        const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
        };
        res.on('drain', done);
        res.on('close', done);
    });
}

function gone(ctx) {
    return shuttingDown || ctx.res.destroyed || ctx.req.socket.destroyed;
}

async function sendJson(ctx, status, obj) {
    const { opts } = ctx;
    let body = Buffer.from(JSON.stringify(obj));
    const headers = commonHeaders(ctx, status);
    headers['content-type'] = 'application/json';
    if (opts.gzip && /\bgzip\b/i.test(ctx.req.headers['accept-encoding'] || '')) {
        body = zlib.gzipSync(body);
        headers['content-encoding'] = 'gzip';
        headers['vary'] = 'Accept-Encoding';
    }
    return sendBody(ctx, status, headers, body);
}

/* A whole body, shaped by the cut and chunked options. */
async function sendBody(ctx, status, headers, body) {
    const { res, opts } = ctx;
    if (opts.cut !== undefined) {
        /*
         * premature close: announce the whole body (or chunked encoding),
         * send half of it, close without the terminating chunk
         */
        if (!opts.chunked) {
            headers['content-length'] = String(body.length);
        }
        writeHead(res, status, headers);
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        ctx.req.socket.destroySoon();
        return;
    }
    if (!opts.chunked) {
        headers['content-length'] = String(body.length);
        writeHead(res, status, headers);
        res.end(body);
        return;
    }
    /* Transfer-Encoding: chunked, the body in three writes (three chunks) */
    writeHead(res, status, headers);
    const third = Math.ceil(body.length / 3);
    for (let off = 0; off < body.length; off += third) {
        if (gone(ctx)) {
            return;
        }
        if (!res.write(body.subarray(off, off + third))) {
            await drained(res);
        }
        await new Promise((resolve) => setImmediate(resolve));
    }
    res.end();
}

function sendError(ctx, status, message, extra) {
    const e = extra || {};
    const body = ctx.wire === 'anthropic'
        ? anthropicError(status, message, e.type)
        : openaiError(status, message, e.type, e.param, e.code);
    return sendJson(ctx, status, body);
}

/*
 * Streams pre-framed SSE events, one write each, honouring pace, cut and
 * stream_error.  `errorEvent` is the framed event stream_error sends.
 */
async function sendStream(ctx, events, errorEvent) {
    const { res, opts } = ctx;
    const headers = commonHeaders(ctx, 200);
    headers['content-type'] = 'text/event-stream; charset=utf-8';
    headers['cache-control'] = 'no-cache';
    writeHead(res, 200, headers);
    res.flushHeaders();
    if (opts.splitat !== undefined) {
        /* the whole stream in two writes, cut at a byte offset, or in
         * three with splitat2 */
        const all = Buffer.concat(events.map((e) => Buffer.from(e)));
        const at = Math.min(opts.splitat, all.length);
        let at2 = at;
        if (opts.splitat2 !== undefined) {
            at2 = Math.max(at, Math.min(opts.splitat2, all.length));
        }
        if (at > 0) {
            res.write(all.subarray(0, at));
            await sleep(3);
        }
        if (gone(ctx)) {
            return;
        }
        if (at2 > at) {
            res.write(all.subarray(at, at2));
            await sleep(3);
            if (gone(ctx)) {
                return;
            }
        }
        res.end(all.subarray(at2));
        return;
    }
    for (let i = 0; i < events.length; i++) {
        if (i > 0 && opts.pace) {
            await sleep(opts.pace);
        }
        if (i === (opts.firstat || 0) && opts.first) {
            /* the headers (and firstat events) went out; the first
             * token is late */
            await sleep(opts.first);
        }
        if (gone(ctx)) {
            return;
        }
        if (opts.stall !== undefined && i >= opts.stall) {
            /* silent from here on, as hang: the socket stays open */
            return;
        }
        if (opts.cut !== undefined && i >= opts.cut) {
            /* FIN after what was written, without the terminating chunk */
            ctx.req.socket.destroySoon();
            return;
        }
        if (opts.stream_error !== undefined && i >= opts.stream_error) {
            res.end(errorEvent);
            return;
        }
        if (!res.write(events[i])) {
            await drained(res);
        }
    }
    if (opts.cut !== undefined) {
        /* every event went out, but the stream is never terminated */
        ctx.req.socket.destroySoon();
        return;
    }
    res.end();
}

/* ------------------------------------------------------------------ faults */

const GARBAGE = Buffer.concat([
    Buffer.from([0x00, 0xff, 0x13, 0x37, 0xfe]),
    Buffer.from(' this is not HTTP, says aigw-mock \x01\x02\x03\r\n\r\n'),
]);

function brokenJson(ctx) {
    if (ctx.wire === 'anthropic') {
        return '{"id":"msg_01BrokenBrokenBroken","type":"message","role":"assistant","content":[{"type":"text","text":"this JSON is cut sh';
    }
    return '{"id":"chatcmpl-BrokenBrokenBroken","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"this JSON is cut sh';
}

/* What a proxy or a load balancer in front of a provider may say with 200. */
const HTML_PAGE = '<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n'
    + '<body><h1>Service Unavailable</h1><p>The server is temporarily unable to serve '
    + 'your request (aigw-mock fault html).</p></body></html>\n';
const NOT_JSON = 'upstream connect error or disconnect/reset before headers. '
    + 'reset reason: overflow (aigw-mock fault notjson)\n';

function keyMatches(req, key) {
    const auth = req.headers['authorization'];
    if (typeof auth === 'string' && auth.replace(/^Bearer\s+/i, '') === key) {
        return true;
    }
    return req.headers['x-api-key'] === key || req.headers['api-key'] === key;
}

function maskKey(key) {
    if (typeof key !== 'string' || key === '') {
        return '(none)';
    }
    if (key.length <= 8) {
        return '*'.repeat(key.length);
    }
    return key.slice(0, 3) + '*'.repeat(Math.min(key.length - 7, 20)) + key.slice(-4);
}

function presentedKey(req) {
    const auth = req.headers['authorization'];
    if (typeof auth === 'string') {
        return auth.replace(/^Bearer\s+/i, '');
    }
    return req.headers['x-api-key'] || req.headers['api-key'] || '';
}

function injectedMessage(ctx, status) {
    const d = ctx.wire === 'anthropic' ? ANTHROPIC_ERRORS[status] : OPENAI_ERRORS[status];
    const text = d ? d[d.length - 1] : 'Error.';
    return `${text} (aigw-mock fault status=${status})`;
}

/* ---------------------------------------------------------------- routing */

function route(apiPath) {
    const p = apiPath.length > 1 ? apiPath.replace(/\/+$/, '') : apiPath;
    let m;
    if (/\/chat\/completions$/.test(p)) {
        return { name: 'chat', method: 'POST' };
    }
    if (/\/completions$/.test(p)) {
        return { name: 'completions', method: 'POST' };
    }
    if (/\/embeddings$/.test(p)) {
        return { name: 'embeddings', method: 'POST' };
    }
    if (/\/responses$/.test(p)) {
        return { name: 'responses', method: 'POST' };
    }
    if ((m = p.match(/\/responses\/([^/]+)(\/cancel|\/input_items)?$/))) {
        const what = m[2] === '/cancel' ? 'cancel' : m[2] ? 'input_items' : 'stored';
        return { name: 'response_' + what, method: what === 'cancel' ? 'POST' : 'GET',
            also: what === 'stored' ? 'DELETE' : undefined, id: m[1] };
    }
    if (/\/moderations$/.test(p)) {
        return { name: 'moderations', method: 'POST' };
    }
    if (/\/messages\/count_tokens$/.test(p)) {
        return { name: 'count_tokens', method: 'POST', anthropic: true };
    }
    if (/\/messages$/.test(p)) {
        return { name: 'messages', method: 'POST', anthropic: true };
    }
    if (/\/models$/.test(p)) {
        return { name: 'models', method: 'GET' };
    }
    if ((m = p.match(/\/models\/([^/]+)$/))) {
        let id = m[1];
        try {
            id = decodeURIComponent(id);
        } catch {
            /* keep it raw */
        }
        return { name: 'model', method: 'GET', id };
    }
    return null;
}

/* ------------------------------------------------------------ OpenAI API */

function openaiUsage(ctx, promptTokens, completionTokens) {
    const cached = Math.min(ctx.opts.cached || 0, promptTokens);
    const reasoning = ctx.opts.reasoning || 0;
    return {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens + reasoning,
        total_tokens: promptTokens + completionTokens + reasoning,
        prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
        completion_tokens_details: {
            reasoning_tokens: reasoning,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    };
}

function choiceCount(body) {
    const n = body.n;
    return Number.isInteger(n) && n >= 1 ? Math.min(n, MAX_CHOICES) : 1;
}

function wantsUsage(body) {
    return isObject(body.stream_options) && body.stream_options.include_usage === true;
}

function chatCompletions(ctx, body) {
    if (typeof body.model !== 'string' || body.model === '') {
        return sendError(ctx, 400, 'you must provide a model parameter', { code: null });
    }
    if (body.messages === undefined) {
        return sendError(ctx, 400, "Missing required parameter: 'messages'.",
            { param: 'messages', code: 'missing_required_parameter' });
    }
    if (!Array.isArray(body.messages)) {
        return sendError(ctx, 400, "Invalid type for 'messages': expected an array of objects.",
            { param: 'messages', code: 'invalid_type' });
    }
    if (body.messages.length === 0) {
        return sendError(ctx, 400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            { param: 'messages', code: 'empty_array' });
    }

    let promptChars = 0;
    let lastUser = '';
    for (const msg of body.messages) {
        if (!isObject(msg)) {
            continue;
        }
        const parts = textParts(msg.content, []);
        promptChars += sumLength(parts);
        if (msg.role === 'user') {
            lastUser = parts.join(' ');
        }
    }
    const promptTokens = Math.max(1, countTokens(promptChars));
    if (ctx.opts.tool && Array.isArray(body.tools) && body.tools.length
        && isObject(body.tools[0]) && isObject(body.tools[0].function)) {
        return chatToolCall(ctx, body, body.tools[0].function.name, lastUser, promptTokens);
    }
    const maxTokens = body.max_completion_tokens !== undefined ? body.max_completion_tokens : body.max_tokens;
    const answer = limitAnswer(continuePrefill(makeAnswer(lastUser, ctx.opts.words, ctx.opts.bigword),
        body.messages), maxTokens);
    const finish = answer.truncated ? 'length' : 'stop';
    const n = choiceCount(body);
    const id = 'chatcmpl-' + randomBase62(29);
    const created = nowSeconds();
    const usage = openaiUsage(ctx, promptTokens, answer.tokens * n);

    if (body.stream !== true) {
        const choices = [];
        for (let i = 0; i < n; i++) {
            choices.push({
                index: i,
                message: { role: 'assistant', content: answer.text, refusal: null, annotations: [] },
                logprobs: null,
                finish_reason: finish,
            });
        }
        return sendJson(ctx, 200, {
            id, object: 'chat.completion', created, model: body.model, choices, usage,
            service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT,
        });
    }

    const withUsage = wantsUsage(body);
    const chunk = (choices) => {
        const c = {
            id, object: 'chat.completion.chunk', created, model: body.model,
            service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT, choices,
        };
        if (withUsage) {
            c.usage = null;
        }
        return sseData(c);
    };
    const events = [];
    const pieces = splitPieces(answer.text, ctx.opts.piece, ctx.opts.chars);
    for (let i = 0; i < n; i++) {
        events.push(chunk([{ index: i, delta: { role: 'assistant', content: '', refusal: null },
            logprobs: null, finish_reason: null }]));
    }
    for (const piece of pieces) {
        for (let i = 0; i < n; i++) {
            events.push(chunk([{ index: i, delta: { content: piece }, logprobs: null, finish_reason: null }]));
        }
    }
    for (let i = 0; i < n; i++) {
        events.push(chunk([{ index: i, delta: {}, logprobs: null, finish_reason: finish }]));
    }
    if (withUsage) {
        events.push(sseData({
            id, object: 'chat.completion.chunk', created, model: body.model,
            service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage,
        }));
    }
    events.push(sseData('[DONE]'));
    return sendStream(ctx, events, sseData(openaiError(500)));
}

/*
 * The Responses API: "input" a string or a list of items, "instructions";
 * a stream is typed events with a sequence_number, the whole response
 * (usage included) in the last one, and no [DONE].
 */
function responses(ctx, body) {
    if (typeof body.model !== 'string' || body.model === '') {
        return sendError(ctx, 400, "Missing required parameter: 'model'.",
            { param: 'model', code: 'missing_required_parameter' });
    }
    if (typeof body.input !== 'string' && !Array.isArray(body.input)) {
        return sendError(ctx, 400, "Invalid type for 'input': expected a string or an array.",
            { param: 'input', code: 'invalid_type' });
    }
    let promptChars = typeof body.instructions === 'string' ? body.instructions.length : 0;
    let lastUser = '';
    const items = typeof body.input === 'string'
        ? [{ role: 'user', content: body.input }] : body.input;
    for (const item of items) {
        if (!isObject(item)) {
            continue;
        }
        const content = Array.isArray(item.content)
            ? item.content.map((c) => (isObject(c) && typeof c.text === 'string'
                ? { type: 'text', text: c.text } : c))
            : item.content;
        const parts = textParts(content, []);
        promptChars += sumLength(parts);
        if (item.role === 'user') {
            lastUser = parts.join(' ');
        }
    }
    const promptTokens = Math.max(1, countTokens(promptChars));
    const answer = limitAnswer(makeAnswer(lastUser, ctx.opts.words, ctx.opts.bigword),
        body.max_output_tokens);
    const id = 'resp_' + crypto.randomBytes(24).toString('hex');
    const msgId = 'msg_' + crypto.randomBytes(24).toString('hex');
    const cached = Math.min(ctx.opts.cached || 0, promptTokens);
    const reasoning = ctx.opts.reasoning || 0;
    const usage = {
        input_tokens: promptTokens,
        input_tokens_details: { cached_tokens: cached },
        output_tokens: answer.tokens + reasoning,
        output_tokens_details: { reasoning_tokens: reasoning },
        total_tokens: promptTokens + answer.tokens + reasoning,
    };
    const message = (text) => ({
        id: msgId, type: 'message', status: 'completed', role: 'assistant',
        content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    });
    const response = (status, output, u) => ({
        id, object: 'response', created_at: nowSeconds(), status,
        error: null,
        incomplete_details: answer.truncated && status !== 'in_progress'
            ? { reason: 'max_output_tokens' } : null,
        instructions: body.instructions === undefined ? null : body.instructions,
        max_output_tokens: body.max_output_tokens === undefined ? null : body.max_output_tokens,
        model: body.model, output, parallel_tool_calls: true,
        previous_response_id: body.previous_response_id || null,
        store: body.store !== false, temperature: 1, text: { format: { type: 'text' } },
        tool_choice: 'auto', tools: [], top_p: 1, truncation: 'disabled',
        usage: u, user: body.user === undefined ? null : body.user, metadata: {},
    });
    const final = answer.truncated ? 'incomplete' : 'completed';

    if (body.stream !== true) {
        return sendJson(ctx, 200, response(final, [message(answer.text)], usage));
    }

    let seq = 0;
    const ev = (type, obj) => sseEvent(type, Object.assign({ type, sequence_number: seq++ }, obj));
    const events = [];
    events.push(ev('response.created', { response: response('in_progress', [], null) }));
    events.push(ev('response.in_progress', { response: response('in_progress', [], null) }));
    events.push(ev('response.output_item.added', { output_index: 0,
        item: { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } }));
    events.push(ev('response.content_part.added', { item_id: msgId, output_index: 0,
        content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }));
    for (const piece of splitPieces(answer.text, ctx.opts.piece, ctx.opts.chars)) {
        events.push(ev('response.output_text.delta', { item_id: msgId, output_index: 0,
            content_index: 0, delta: piece, logprobs: [] }));
    }
    events.push(ev('response.output_text.done', { item_id: msgId, output_index: 0,
        content_index: 0, text: answer.text, logprobs: [] }));
    events.push(ev('response.content_part.done', { item_id: msgId, output_index: 0,
        content_index: 0, part: { type: 'output_text', text: answer.text, annotations: [] } }));
    events.push(ev('response.output_item.done', { output_index: 0, item: message(answer.text) }));
    events.push(ev('response.' + final, { response: response(final, [message(answer.text)], usage) }));
    return sendStream(ctx, events, sseEvent('error', {
        type: 'error', code: 'server_error', message: 'The server had an error.', param: null,
        sequence_number: seq,
    }));
}

/*
 * A stored response, by its id: the mock keeps none, and answers every
 * id starting "resp_" as a completed response with no output; others
 * are not found, in OpenAI's words.
 */
function storedResponse(ctx, endpoint, method) {
    const id = endpoint.id;
    if (!id.startsWith('resp_')) {
        return sendError(ctx, 404, `Response with id '${id}' not found.`,
            { param: null, code: null });
    }
    if (endpoint.name === 'response_input_items') {
        return sendJson(ctx, 200, { object: 'list', data: [], first_id: null, last_id: null,
            has_more: false });
    }
    if (method === 'DELETE') {
        return sendJson(ctx, 200, { id, object: 'response', deleted: true });
    }
    return sendJson(ctx, 200, {
        id, object: 'response', created_at: nowSeconds(),
        status: endpoint.name === 'response_cancel' ? 'cancelled' : 'completed',
        error: null, incomplete_details: null, model: 'gpt-4o-mini', output: [],
        usage: { input_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7,
            output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 12 },
    });
}

function completions(ctx, body) {
    if (typeof body.model !== 'string' || body.model === '') {
        return sendError(ctx, 400, 'you must provide a model parameter', { code: null });
    }
    if (body.prompt === undefined) {
        return sendError(ctx, 400, "Missing required parameter: 'prompt'.",
            { param: 'prompt', code: 'missing_required_parameter' });
    }

    /* prompt: string, array of strings, array of tokens, array of token arrays */
    let prompts;
    let promptTokens = 0;
    const p = body.prompt;
    if (typeof p === 'string') {
        prompts = [p];
    } else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) {
        prompts = p.slice(0, MAX_CHOICES);
    } else if (Array.isArray(p) && p.every((x) => Number.isInteger(x))) {
        prompts = [''];
        promptTokens = p.length;
    } else if (Array.isArray(p) && p.length > 0 && p.every((x) => Array.isArray(x))) {
        prompts = p.slice(0, MAX_CHOICES).map(() => '');
        promptTokens = p.reduce((acc, x) => acc + x.length, 0);
    } else {
        return sendError(ctx, 400, "Invalid type for 'prompt'.", { param: 'prompt', code: 'invalid_type' });
    }
    for (const s of prompts) {
        promptTokens += countTokens(s.length);
    }
    promptTokens = Math.max(1, promptTokens);

    const n = choiceCount(body);
    const finishes = [];
    const texts = [];
    let completionTokens = 0;
    for (const s of prompts) {
        const answer = limitAnswer(makeAnswer(s, ctx.opts.words, ctx.opts.bigword), body.max_tokens);
        for (let i = 0; i < n; i++) {
            texts.push(answer.text);
            finishes.push(answer.truncated ? 'length' : 'stop');
            completionTokens += answer.tokens;
        }
    }
    const id = 'cmpl-' + randomBase62(29);
    const created = nowSeconds();
    const usage = {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
    };

    if (body.stream !== true) {
        return sendJson(ctx, 200, {
            id, object: 'text_completion', created, model: body.model,
            choices: texts.map((text, index) => ({ text, index, logprobs: null, finish_reason: finishes[index] })),
            usage, system_fingerprint: SYSTEM_FINGERPRINT,
        });
    }

    const withUsage = wantsUsage(body);
    const chunk = (choices) => {
        const c = { id, object: 'text_completion', created, choices, model: body.model,
            system_fingerprint: SYSTEM_FINGERPRINT };
        if (withUsage) {
            c.usage = null;
        }
        return sseData(c);
    };
    const events = [];
    for (let index = 0; index < texts.length; index++) {
        for (const piece of splitPieces(texts[index], ctx.opts.piece, ctx.opts.chars)) {
            events.push(chunk([{ text: piece, index, logprobs: null, finish_reason: null }]));
        }
        events.push(chunk([{ text: '', index, logprobs: null, finish_reason: finishes[index] }]));
    }
    if (withUsage) {
        events.push(sseData({ id, object: 'text_completion', created, choices: [], model: body.model,
            system_fingerprint: SYSTEM_FINGERPRINT, usage }));
    }
    events.push(sseData('[DONE]'));
    return sendStream(ctx, events, sseData(openaiError(500)));
}

/* FNV-1a, then mulberry32: a deterministic unit vector per (input, dims). */
function embeddingVector(text, dims) {
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) {
        h ^= text.charCodeAt(i);
        h = Math.imul(h, 0x01000193) >>> 0;
    }
    let seed = (h ^ dims) >>> 0;
    const v = new Float32Array(dims);
    let norm = 0;
    for (let i = 0; i < dims; i++) {
        seed = (seed + 0x6d2b79f5) >>> 0;
        let t = seed;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        const x = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
        v[i] = x;
        norm += x * x;
    }
    norm = Math.sqrt(norm) || 1;
    for (let i = 0; i < dims; i++) {
        v[i] = v[i] / norm;
    }
    return v;
}

/*
 * The semantic embedder, for models whose name holds "semantic": a
 * deterministic stand-in for a real embedding model, so that a gateway's
 * semantic cache can be tested and measured.  The text is lower-cased,
 * contractions opened ("what's" -> "what is", "isn't" -> "is not"),
 * split into words; stop words go, synonyms become one word, a plural
 * "s" goes.  Features: each word (1; a negation or a number 2; a soft
 * word such as "actually" 0.25) and each unordered pair of neighbouring
 * words (0.5), hashed (FNV-1a) to a dimension with a sign.  Paraphrases
 * that differ in stop words, synonyms, case, punctuation or word order
 * are one vector; a negation, another number or another entity is far
 * (cosine well under 0.95).  See docs/mock-provider.md.
 */
const SEMANTIC_DIMS = 256;
const SEMANTIC_STOP = new Set(('a an the is are was were be been being of in on at to for from by '
    + 'with about into as and or what whats which who whom how tell me please can could would '
    + 'will you your i my we our do does did give show know want like let need some any there '
    + 'this that these those it its should shall may might must just kindly hey hi hello so '
    + 'us explain describe say').split(' '));
const SEMANTIC_SOFT = new Set('actually really exactly currently today basically quite very'.split(' '));
const SEMANTIC_NEGATION = new Set('not no never without none nothing'.split(' '));
const SEMANTIC_SYNONYMS = {
    biggest: 'largest', big: 'large', huge: 'large', large: 'large', automobile: 'car',
    vehicle: 'car', purchase: 'buy', buying: 'buy', bought: 'buy', quick: 'fast',
    quickly: 'fast', rapid: 'fast', begin: 'start', commence: 'start', kilometre: 'km',
    kilometer: 'km', kilometres: 'km', kilometers: 'km', city: 'city', town: 'city',
    physician: 'doctor', medic: 'doctor', healthy: 'health', cost: 'price', costs: 'price',
    fix: 'repair', mend: 'repair', film: 'movie', picture: 'movie', author: 'writer',
    wrote: 'write', written: 'write', writes: 'write', create: 'make', build: 'make',
    convert: 'convert', translate: 'translate', temp: 'temperature', ocean: 'sea',
    boil: 'boil', boiling: 'boil', sum: 'add', plus: 'add', capitol: 'capital',
};

function semanticWords(text) {
    const t = text.toLowerCase()
        .replace(/\b(\w+)n't\b/g, '$1 not').replace(/\bcan't\b/g, 'can not')
        .replace(/\bwon't\b/g, 'will not').replace(/'s\b/g, ' is').replace(/'re\b/g, ' are')
        .replace(/'m\b/g, ' am').replace(/'ll\b/g, ' will').replace(/'ve\b/g, ' have');
    const words = [];
    for (let w of t.split(/[^a-z0-9.]+/)) {
        w = w.replace(/^\.+|\.+$/g, '');
        if (w === '' || SEMANTIC_STOP.has(w)) {
            continue;
        }
        if (/^[a-z]+$/.test(w) && w.length > 3 && w.endsWith('s') && !w.endsWith('ss')) {
            w = w.slice(0, -1);
        }
        w = SEMANTIC_SYNONYMS[w] || w;
        if (!SEMANTIC_STOP.has(w)) {
            words.push(w);
        }
    }
    return words;
}

function semanticVector(text, dims) {
    const v = new Float64Array(dims);
    const add = (feature, weight) => {
        let h = 0x811c9dc5;
        for (let i = 0; i < feature.length; i++) {
            h ^= feature.charCodeAt(i);
            h = Math.imul(h, 0x01000193) >>> 0;
        }
        v[h % dims] += (h & 0x80000000) ? -weight : weight;
    };
    const words = semanticWords(text);
    const hard = words.filter((w) => !SEMANTIC_SOFT.has(w));
    for (const w of words) {
        const weight = SEMANTIC_SOFT.has(w) ? 0.25
            : (SEMANTIC_NEGATION.has(w) || /^[0-9]/.test(w)) ? 2 : 1;
        add('u:' + w, weight);
    }
    for (let i = 0; i + 1 < hard.length; i++) {
        const [a, b] = hard[i] < hard[i + 1] ? [hard[i], hard[i + 1]] : [hard[i + 1], hard[i]];
        add('b:' + a + '|' + b, 0.5);
    }
    let norm = 0;
    for (let i = 0; i < dims; i++) {
        norm += v[i] * v[i];
    }
    norm = Math.sqrt(norm);
    const out = new Float32Array(dims);
    for (let i = 0; i < dims; i++) {
        out[i] = norm ? v[i] / norm : 0;
    }
    if (norm === 0) {
        out[0] = 1;     /* nothing but stop words: one vector for all */
    }
    return out;
}

function embeddings(ctx, body) {
    if (typeof body.model !== 'string' || body.model === '') {
        return sendError(ctx, 400, 'you must provide a model parameter', { code: null });
    }
    const input = body.input;
    if (input === undefined) {
        return sendError(ctx, 400, "Missing required parameter: 'input'.",
            { param: 'input', code: 'missing_required_parameter' });
    }
    /* each input as [text used for the vector, tokens] */
    let items;
    if (typeof input === 'string') {
        items = [[input, countTokens(input.length)]];
    } else if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'string')) {
        items = input.map((s) => [s, countTokens(s.length)]);
    } else if (Array.isArray(input) && input.length > 0 && input.every((x) => Number.isInteger(x))) {
        items = [[JSON.stringify(input), input.length]];
    } else if (Array.isArray(input) && input.length > 0
               && input.every((x) => Array.isArray(x) && x.every((y) => Number.isInteger(y)))) {
        items = input.map((x) => [JSON.stringify(x), x.length]);
    } else {
        return sendError(ctx, 400, "Invalid type for 'input'.", { param: 'input', code: 'invalid_type' });
    }
    if (items.length > MAX_EMBEDDING_INPUTS) {
        return sendError(ctx, 400, `'input' : maximum ${MAX_EMBEDDING_INPUTS} items allowed.`, { param: 'input' });
    }
    const semantic = /semantic/.test(body.model);
    // "mock-semantic-3072": the semantic embedder at 3072 numbers
    const sdims = /semantic-(\d+)$/.exec(body.model);
    let dims = semantic ? (sdims ? Math.min(+sdims[1] || SEMANTIC_DIMS, MAX_EMBEDDING_DIMS) : SEMANTIC_DIMS)
        : /3-large/.test(body.model) ? 3072 : 1536;
    if (body.dimensions !== undefined) {
        if (!Number.isInteger(body.dimensions) || body.dimensions < 1 || body.dimensions > MAX_EMBEDDING_DIMS) {
            return sendError(ctx, 400, `Invalid 'dimensions': must be between 1 and ${MAX_EMBEDDING_DIMS}.`,
                { param: 'dimensions' });
        }
        dims = body.dimensions;
    }
    const format = body.encoding_format === undefined ? 'float' : body.encoding_format;
    if (format !== 'float' && format !== 'base64') {
        return sendError(ctx, 400, "Invalid 'encoding_format': expected one of 'float' or 'base64'.",
            { param: 'encoding_format' });
    }
    let tokens = 0;
    const data = items.map(([text, t], index) => {
        tokens += t;
        const v = semantic ? semanticVector(text, dims) : embeddingVector(text, dims);
        const embedding = format === 'base64'
            ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')
            : Array.from(v, (x) => Number(x.toPrecision(9)));
        return { object: 'embedding', index, embedding };
    });
    return sendJson(ctx, 200, {
        object: 'list', data, model: body.model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
}

/*
 * /v1/moderations, deterministic: an input holding a marker word is
 * flagged in that category (violence: "mod-violence", hate: "mod-hate",
 * self-harm: "mod-self-harm"), with a score of 0.99; others 0.0001.
 */
const MODERATION_CATEGORIES = ['harassment', 'harassment/threatening', 'hate',
    'hate/threatening', 'illicit', 'illicit/violent', 'self-harm',
    'self-harm/instructions', 'self-harm/intent', 'sexual', 'sexual/minors',
    'violence', 'violence/graphic'];

function moderations(ctx, body) {
    let input = body.input;
    if (typeof input === 'string') {
        input = [input];
    }
    if (!Array.isArray(input) || input.length === 0
        || !input.every((x) => typeof x === 'string')) {
        return sendError(ctx, 400, "Invalid type for 'input'.", { param: 'input', code: 'invalid_type' });
    }
    const results = input.map((text) => {
        const categories = {};
        const scores = {};
        let flagged = false;
        for (const c of MODERATION_CATEGORIES) {
            const hit = text.includes(`mod-${c.replace('/', '-')}`);
            categories[c] = hit;
            scores[c] = hit ? 0.99 : 0.0001;
            flagged = flagged || hit;
        }
        return { flagged, categories, category_scores: scores };
    });
    return sendJson(ctx, 200, {
        id: `modr-${randomBase62(24)}`,
        model: typeof body.model === 'string' ? body.model : 'omni-moderation-latest',
        results,
    });
}

/* ---------------------------------------------------------- Anthropic API */

function anthropicModel(m) {
    return { type: 'model', id: m[0], display_name: m[1], created_at: m[2] };
}

function openaiModel(m) {
    return { id: m[0], object: 'model', created: m[1], owned_by: 'system' };
}

function listModels(ctx) {
    if (ctx.wire === 'anthropic') {
        return sendJson(ctx, 200, {
            data: ANTHROPIC_MODELS.map(anthropicModel), has_more: false,
            first_id: ANTHROPIC_MODELS[0][0], last_id: ANTHROPIC_MODELS[ANTHROPIC_MODELS.length - 1][0],
        });
    }
    return sendJson(ctx, 200, { object: 'list', data: OPENAI_MODELS.map(openaiModel) });
}

function getModel(ctx, id) {
    if (ctx.wire === 'anthropic') {
        const m = ANTHROPIC_MODELS.find((x) => x[0] === id);
        return m ? sendJson(ctx, 200, anthropicModel(m)) : sendError(ctx, 404, `model: ${id}`);
    }
    const m = OPENAI_MODELS.find((x) => x[0] === id);
    return m ? sendJson(ctx, 200, openaiModel(m))
        : sendError(ctx, 404, `The model '${id}' does not exist`, { param: 'model', code: 'model_not_found' });
}

/* Validates an Anthropic request; returns { promptTokens, lastUser } or null after an error. */
function anthropicPrompt(ctx, body, needMaxTokens) {
    if (typeof body.model !== 'string' || body.model === '') {
        sendError(ctx, 400, 'model: Field required');
        return null;
    }
    if (needMaxTokens && body.max_tokens === undefined) {
        sendError(ctx, 400, 'max_tokens: Field required');
        return null;
    }
    if (needMaxTokens && (!Number.isInteger(body.max_tokens) || body.max_tokens < 1)) {
        sendError(ctx, 400, 'max_tokens: Input should be greater than or equal to 1');
        return null;
    }
    if (!Array.isArray(body.messages)) {
        sendError(ctx, 400, 'messages: Field required');
        return null;
    }
    if (body.messages.length === 0) {
        sendError(ctx, 400, 'messages: at least one message is required');
        return null;
    }
    let chars = sumLength(textParts(body.system, []));
    let lastUser = '';
    for (const msg of body.messages) {
        if (!isObject(msg)) {
            continue;
        }
        const parts = textParts(msg.content, []);
        chars += sumLength(parts);
        if (msg.role === 'user') {
            lastUser = parts.join(' ');
        }
    }
    return { promptTokens: Math.max(1, countTokens(chars)), lastUser };
}

function anthropicUsage(ctx, promptTokens, outputTokens) {
    const cached = Math.min(ctx.opts.cached || 0, promptTokens);
    const written = Math.min(ctx.opts.cache_write || 0, promptTokens - cached);
    return {
        input_tokens: promptTokens - cached - written,
        cache_creation_input_tokens: written,
        cache_read_input_tokens: cached,
        cache_creation: { ephemeral_5m_input_tokens: written, ephemeral_1h_input_tokens: 0 },
        output_tokens: outputTokens,
        service_tier: 'standard',
    };
}

function messages(ctx, body) {
    const prompt = anthropicPrompt(ctx, body, true);
    if (!prompt) {
        return undefined;
    }
    if (ctx.opts.tool && Array.isArray(body.tools) && body.tools.length
        && isObject(body.tools[0])) {
        return messagesToolUse(ctx, body, body.tools[0].name, prompt);
    }
    const answer = limitAnswer(continuePrefill(makeAnswer(prompt.lastUser, ctx.opts.words, ctx.opts.bigword),
        body.messages), body.max_tokens);
    const stopReason = answer.truncated ? 'max_tokens' : 'end_turn';
    const id = 'msg_01' + randomBase62(22);
    const outputTokens = answer.tokens + (ctx.opts.reasoning || 0);

    if (body.stream !== true) {
        return sendJson(ctx, 200, {
            id, type: 'message', role: 'assistant', model: body.model,
            content: [{ type: 'text', text: answer.text }],
            stop_reason: stopReason, stop_sequence: null,
            usage: anthropicUsage(ctx, prompt.promptTokens, outputTokens),
        });
    }

    const events = [];
    events.push(sseEvent('message_start', {
        type: 'message_start',
        message: {
            id, type: 'message', role: 'assistant', model: body.model, content: [],
            stop_reason: null, stop_sequence: null,
            usage: anthropicUsage(ctx, prompt.promptTokens, 1),
        },
    }));
    events.push(sseEvent('content_block_start', {
        type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' },
    }));
    events.push(sseEvent('ping', { type: 'ping' }));
    for (const piece of splitPieces(answer.text, ctx.opts.piece, ctx.opts.chars)) {
        events.push(sseEvent('content_block_delta', {
            type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: piece },
        }));
    }
    events.push(sseEvent('content_block_stop', { type: 'content_block_stop', index: 0 }));
    events.push(sseEvent('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason, stop_sequence: null },
        usage: { output_tokens: outputTokens },
    }));
    events.push(sseEvent('message_stop', { type: 'message_stop' }));
    return sendStream(ctx, events, sseEvent('error', {
        type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' },
    }));
}

/*
 * tool: the first tool the request declares is called, with the first
 * 40 characters of the last user text as {"q": ...}; the arguments are
 * streamed in two pieces.
 */
function toolArguments(lastUser) {
    return JSON.stringify({ q: lastUser.slice(0, SNIPPET_CHARS) });
}

function chatToolCall(ctx, body, name, lastUser, promptTokens) {
    const id = 'chatcmpl-' + randomBase62(29);
    const callId = 'call_' + randomBase62(24);
    const created = nowSeconds();
    const args = toolArguments(lastUser);
    const usage = openaiUsage(ctx, promptTokens, countTokens(args.length));

    if (body.stream !== true) {
        return sendJson(ctx, 200, {
            id, object: 'chat.completion', created, model: body.model,
            choices: [{
                index: 0,
                message: {
                    role: 'assistant', content: null, refusal: null, annotations: [],
                    tool_calls: [{ id: callId, type: 'function', function: { name, arguments: args } }],
                },
                logprobs: null, finish_reason: 'tool_calls',
            }],
            usage, service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT,
        });
    }

    const withUsage = wantsUsage(body);
    const chunk = (delta, finish) => {
        const c = {
            id, object: 'chat.completion.chunk', created, model: body.model,
            service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT,
            choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        };
        if (withUsage) {
            c.usage = null;
        }
        return sseData(c);
    };
    const half = Math.floor(args.length / 2);
    const events = [
        chunk({ role: 'assistant', content: null, refusal: null }, null),
        chunk({ tool_calls: [{ index: 0, id: callId, type: 'function',
            function: { name, arguments: '' } }] }, null),
        chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, half) } }] }, null),
        chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] }, null),
        chunk({}, 'tool_calls'),
    ];
    if (withUsage) {
        events.push(sseData({
            id, object: 'chat.completion.chunk', created, model: body.model,
            service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage,
        }));
    }
    events.push(sseData('[DONE]'));
    return sendStream(ctx, events, sseData(openaiError(500)));
}

function messagesToolUse(ctx, body, name, prompt) {
    const id = 'msg_01' + randomBase62(22);
    const toolId = 'toolu_01' + randomBase62(22);
    const args = toolArguments(prompt.lastUser);
    const outputTokens = countTokens(args.length);

    if (body.stream !== true) {
        return sendJson(ctx, 200, {
            id, type: 'message', role: 'assistant', model: body.model,
            content: [{ type: 'tool_use', id: toolId, name, input: JSON.parse(args) }],
            stop_reason: 'tool_use', stop_sequence: null,
            usage: anthropicUsage(ctx, prompt.promptTokens, outputTokens),
        });
    }

    const half = Math.floor(args.length / 2);
    const events = [
        sseEvent('message_start', {
            type: 'message_start',
            message: {
                id, type: 'message', role: 'assistant', model: body.model, content: [],
                stop_reason: null, stop_sequence: null,
                usage: anthropicUsage(ctx, prompt.promptTokens, 1),
            },
        }),
        sseEvent('content_block_start', {
            type: 'content_block_start', index: 0,
            content_block: { type: 'tool_use', id: toolId, name, input: {} },
        }),
        sseEvent('content_block_delta', {
            type: 'content_block_delta', index: 0,
            delta: { type: 'input_json_delta', partial_json: args.slice(0, half) },
        }),
        sseEvent('content_block_delta', {
            type: 'content_block_delta', index: 0,
            delta: { type: 'input_json_delta', partial_json: args.slice(half) },
        }),
        sseEvent('content_block_stop', { type: 'content_block_stop', index: 0 }),
        sseEvent('message_delta', {
            type: 'message_delta',
            delta: { stop_reason: 'tool_use', stop_sequence: null },
            usage: { output_tokens: outputTokens },
        }),
        sseEvent('message_stop', { type: 'message_stop' }),
    ];
    return sendStream(ctx, events, sseEvent('error', {
        type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' },
    }));
}

function countTokensEndpoint(ctx, body) {
    const prompt = anthropicPrompt(ctx, body, false);
    if (!prompt) {
        return undefined;
    }
    return sendJson(ctx, 200, { input_tokens: prompt.promptTokens });
}

/* ----------------------------------------------------------- introspection */

function sendControl(res, status, obj) {
    const body = Buffer.from(JSON.stringify(obj, null, 2) + '\n');
    res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': String(body.length),
        'cache-control': 'no-store',
    });
    res.end(body);
}

function handleControl(name, req, res) {
    if (name === 'reset') {
        if (req.method !== 'GET' && req.method !== 'POST') {
            return sendControl(res, 405, { error: 'use GET or POST' });
        }
        resetState();
        return sendControl(res, 200, { ok: true });
    }
    if (req.method !== 'GET') {
        return sendControl(res, 405, { error: 'use GET' });
    }
    if (name === 'stats') {
        return sendControl(res, 200, { requests: state.requests, connections: state.connections,
            pid: cluster.isWorker ? process.ppid : process.pid });
    }
    if (state.last === null) {
        return sendControl(res, 404, { error: 'no API request received since the last reset' });
    }
    return sendControl(res, 200, state.last);
}

/* ---------------------------------------------------------------- requests */

/* Reads the request body; resolves to a Buffer, or null when it is too large. */
function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0;
        req.on('data', (c) => {
            size += c.length;
            if (size <= MAX_BODY_BYTES) {
                chunks.push(c);
            }
        });
        req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks)));
        req.on('error', reject);
        req.on('aborted', () => reject(new Error('request aborted')));
    });
}

function record(req, body) {
    const sock = req.socket;
    state.requests++;
    if (sock.aigwEpoch !== state.epoch) {
        sock.aigwEpoch = state.epoch;
        state.connections++;
    }
    state.last = {
        method: req.method,
        path: req.url,
        headers: Object.assign({}, req.headers),
        body: body === null ? null : body.toString('utf8'),
        connection: sock.aigwId,
        time: new Date().toISOString(),
    };
    if (recordFile) {
        fs.appendFileSync(recordFile, JSON.stringify(state.last) + '\n');
    }
}

async function handleApi(req, res, rawPath) {
    const body = await readBody(req);
    record(req, body);

    const { apiPath, specs } = extractFaultSegments(rawPath);
    const endpoint = route(apiPath);
    const anthropic = endpoint ? (endpoint.anthropic === true
        || (endpoint.method === 'GET' && req.headers['anthropic-version'] !== undefined))
        : req.headers['anthropic-version'] !== undefined;
    const ctx = { req, res, start: Date.now(), wire: anthropic ? 'anthropic' : 'openai', opts: {} };

    const resolved = resolveOptions(specs, req.headers['x-mock']);
    if (resolved.error) {
        return sendError(ctx, 400, resolved.error);
    }
    ctx.opts = applyTimes(resolved.opts, resolved.key);
    const opts = ctx.opts;

    if (opts.delay) {
        await sleep(opts.delay);
        if (gone(ctx)) {
            return undefined;
        }
    }
    if (opts.reset) {
        const sock = req.socket;
        if (typeof sock.resetAndDestroy === 'function') {
            sock.resetAndDestroy();
        } else {
            sock.destroy();
        }
        return undefined;
    }
    if (opts.hang) {
        return undefined; /* the socket stays open until the client gives up */
    }
    if (opts.garbage) {
        req.socket.end(GARBAGE);
        return undefined;
    }
    if (opts.key !== undefined && !keyMatches(req, opts.key)) {
        const shown = maskKey(presentedKey(req));
        return ctx.wire === 'anthropic'
            ? sendError(ctx, 401, 'invalid x-api-key')
            : sendError(ctx, 401, `Incorrect API key provided: ${shown}. You can find your API key at https://platform.openai.com/account/api-keys.`);
    }
    if (opts.status !== undefined) {
        return sendError(ctx, opts.status, injectedMessage(ctx, opts.status));
    }
    if (opts.context !== undefined) {
        /* the prompt is longer than the model's context of N tokens */
        const n = opts.context;
        return ctx.wire === 'anthropic'
            ? sendError(ctx, 400, `prompt is too long: ${n + 1} tokens > ${n} maximum`)
            : sendError(ctx, 400, `This model's maximum context length is ${n} tokens. `
                + `However, your messages resulted in ${n + 1} tokens.`,
                { param: 'messages', code: 'context_length_exceeded' });
    }
    if (opts.badjson || opts.notjson || opts.html) {
        const headers = commonHeaders(ctx, 200);
        headers['content-type'] = opts.html ? 'text/html; charset=utf-8' : 'application/json';
        return sendBody(ctx, 200, headers, Buffer.from(opts.html ? HTML_PAGE
            : opts.notjson ? NOT_JSON : brokenJson(ctx)));
    }
    if (body === null) {
        return sendError(ctx, 413, undefined);
    }
    if (!endpoint) {
        return sendError(ctx, 404, ctx.wire === 'anthropic' ? 'Not Found' : `Invalid URL (${req.method} ${apiPath})`,
            { code: null });
    }
    if (req.method !== endpoint.method && req.method !== endpoint.also) {
        res.setHeader('allow', endpoint.method);
        return sendError(ctx, 405, `Invalid method for URL (${req.method} ${apiPath})`, { code: null });
    }
    if (endpoint.name === 'models') {
        return listModels(ctx);
    }
    if (endpoint.name === 'model') {
        return getModel(ctx, endpoint.id);
    }
    if (endpoint.name.startsWith('response_')) {
        return storedResponse(ctx, endpoint, req.method);
    }

    let json;
    try {
        json = JSON.parse(body.toString('utf8'));
    } catch {
        json = undefined;
    }
    if (!isObject(json)) {
        return sendError(ctx, 400, ctx.wire === 'anthropic'
            ? 'There was an issue with your request body. The request body is not valid JSON.'
            : "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            { code: null });
    }
    switch (endpoint.name) {
    case 'chat': return chatCompletions(ctx, json);
    case 'completions': return completions(ctx, json);
    case 'embeddings': return embeddings(ctx, json);
    case 'responses': return responses(ctx, json);
    case 'moderations': return moderations(ctx, json);
    case 'messages': return messages(ctx, json);
    default: return countTokensEndpoint(ctx, json);
    }
}

function onRequest(req, res) {
    const url = req.url || '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    if (verbose) {
        const start = Date.now();
        res.on('close', () => {
            process.stderr.write(`aigw-mock: ${req.method} ${url} ${res.headersSent ? res.statusCode : '-'} `
                + `${Date.now() - start}ms conn=${req.socket.aigwId}\n`);
        });
    }
    const control = rawPath.match(/\/_mock\/(last|stats|reset)\/?$/);
    if (control) {
        req.resume();
        handleControl(control[1], req, res);
        return;
    }
    handleApi(req, res, rawPath).catch((err) => {
        if (verbose) {
            process.stderr.write(`aigw-mock: ${err && err.stack ? err.stack : err}\n`);
        }
        if (!res.headersSent && !res.destroyed) {
            sendControl(res, 500, openaiError(500, `aigw-mock internal error: ${err && err.message}`));
        } else {
            res.destroy();
        }
    });
}

/* -------------------------------------------------------------------- main */

function printUsage(code) {
    process.stdout.write('usage: node aigw-mock.js [--port 8081] [--host 127.0.0.1] [--workers N]\n'
        + '                         [--verbose] [--exit-on-stdin-eof] [--record FILE]\n');
    process.exit(code);
}

function parseArgs(argv) {
    const args = { port: 8081, host: '127.0.0.1', workers: 1, verbose: false, stdinEof: false };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i];
        let v = null;
        const eq = a.indexOf('=');
        if (a.startsWith('--') && eq > 0) {
            v = a.slice(eq + 1);
            a = a.slice(0, eq);
        }
        const value = () => {
            if (v !== null) {
                return v;
            }
            if (i + 1 >= argv.length) {
                process.stderr.write(`aigw-mock: ${a} needs a value\n`);
                printUsage(2);
            }
            return argv[++i];
        };
        if (a === '--port' || a === '-p') {
            const p = value();
            if (!/^[0-9]{1,5}$/.test(p) || Number(p) > 65535) {
                process.stderr.write(`aigw-mock: bad port '${p}'\n`);
                printUsage(2);
            }
            args.port = Number(p);
        } else if (a === '--host') {
            args.host = value();
        } else if (a === '--workers') {
            const w = value();
            if (!/^[0-9]{1,2}$/.test(w) || Number(w) < 1 || Number(w) > 64) {
                process.stderr.write(`aigw-mock: --workers takes 1..64, not '${w}'\n`);
                printUsage(2);
            }
            args.workers = Number(w);
        } else if (a === '--verbose' || a === '-v') {
            args.verbose = true;
        } else if (a === '--record') {
            args.record = value();
        } else if (a === '--exit-on-stdin-eof') {
            args.stdinEof = true;
        } else if (a === '--help' || a === '-h') {
            printUsage(0);
        } else {
            process.stderr.write(`aigw-mock: unknown argument '${a}'\n`);
            printUsage(2);
        }
    }
    return args;
}

/* Calls stop() on SIGTERM, SIGINT and, if asked, EOF on stdin; a second signal exits at once. */
function onStopRequest(args, stop) {
    let stopping = false;
    const handler = () => {
        if (stopping) {
            process.exit(0);
        }
        stopping = true;
        if (args.stdinEof) {
            process.stdin.destroy();
        }
        stop();
        /* only fires if something unexpected still holds the event loop */
        setTimeout(() => process.exit(0), 2000).unref();
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
    if (args.stdinEof) {
        process.stdin.on('end', handler);
        process.stdin.on('error', handler);
        process.stdin.resume();
    }
}

/* One HTTP server: the whole mock, or one cluster worker. */
function serve(args, announce) {
    verbose = args.verbose;
    recordFile = args.record || null;

    const server = http.createServer({ noDelay: true }, onRequest);
    server.keepAliveTimeout = 65000;
    server.headersTimeout = 66000;

    server.on('connection', (sock) => {
        sock.aigwId = ++connectionSeq;
        sock.aigwEpoch = -1;
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
    });

    onStopRequest(announce ? args : { ...args, stdinEof: false }, () => {
        shuttingDown = true;
        server.close();
        for (const t of timers) {
            clearTimeout(t);
        }
        timers.clear();
        for (const s of sockets) {
            s.destroy();
        }
        sockets.clear();
        if (cluster.isWorker) {
            process.disconnect(); /* the IPC channel would keep us alive */
        }
    });

    if (cluster.isWorker) {
        process.on('disconnect', () => process.exit(0)); /* the supervisor is gone */
    }
    server.on('error', (err) => {
        process.stderr.write(`aigw-mock: ${err.message}\n`);
        process.exit(1);
    });
    server.listen(args.port, args.host, () => {
        if (announce) {
            process.stdout.write(`aigw-mock listening on ${args.host}:${server.address().port}\n`);
        }
    });
}

/*
 * --workers N: N processes share the port (node:cluster).  Each keeps its
 * own /_mock/* state, so introspection is only meaningful with one worker.
 */
function supervise(args) {
    const workers = new Set();
    let listening = 0;
    let stopping = false;

    const stopAll = () => {
        stopping = true;
        for (const w of workers) {
            w.process.kill('SIGTERM');
        }
    };
    onStopRequest(args, stopAll);

    for (let i = 0; i < args.workers; i++) {
        const w = cluster.fork();
        workers.add(w);
        w.on('listening', (addr) => {
            if (++listening === args.workers) {
                process.stdout.write(`aigw-mock listening on ${args.host}:${addr.port}\n`);
            }
        });
        w.on('exit', (code) => {
            workers.delete(w);
            if (!stopping) {
                process.stderr.write(`aigw-mock: worker ${w.process.pid} exited (${code}), stopping\n`);
                process.exitCode = 1;
                stopAll();
            }
        });
    }
}

function main() {
    const args = parseArgs(process.argv.slice(2));
    if (args.workers > 1 && cluster.isPrimary) {
        supervise(args);
    } else {
        serve(args, cluster.isPrimary);
    }
}

main();
