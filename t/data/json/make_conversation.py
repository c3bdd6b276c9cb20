#!/usr/bin/env python3
# Writes conversation_50k.json: a long OpenAI chat body (about 50 KB) as
# SDKs send it, mostly plain text in "content" strings, with the escapes
# real text has (line ends, quotes, backslashes, non-ASCII as \u and raw).
# Deterministic: the same bytes on every run.

import json
import random

rnd = random.Random(12)
words = ("the of and to a in is that for it as with was on be by this "
         "request gateway model token stream provider latency budget "
         "nginx upstream buffer worker shared zone cache quota key route "
         "fallback retry answer question summary context window").split()


def sentence():
    s = " ".join(rnd.choice(words) for _ in range(rnd.randint(6, 18)))
    return s[0].upper() + s[1:] + rnd.choice([".", ".", "?", "!"])


def paragraph():
    return " ".join(sentence() for _ in range(rnd.randint(2, 6)))


def content(i):
    parts = [paragraph() for _ in range(rnd.randint(1, 4))]
    if i % 5 == 3:
        parts.append('```c\nprintf("%s\\n", "x");\nif (a && b) { return; }\n```')
    if i % 7 == 2:
        parts.append("Café, naïve, 日本語, emoji \U0001F600.")
    return "\n\n".join(parts)


messages = [{"role": "system", "content": "You are a helpful assistant."}]
i = 0
while len(json.dumps(messages)) < 50500:
    role = "user" if i % 2 == 0 else "assistant"
    messages.append({"role": role, "content": content(i)})
    i += 1

body = {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.7,
        "stream": True, "stream_options": {"include_usage": True},
        "user": "user-8812"}

with open("conversation_50k.json", "w", encoding="utf-8") as f:
    # ensure_ascii: the non-ASCII text as \u escapes, as Python SDKs send
    f.write(json.dumps(body, ensure_ascii=(True)))
