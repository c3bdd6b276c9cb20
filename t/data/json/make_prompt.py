#!/usr/bin/env python3
# Writes prompt_2k.json and prompt_50k.json, the PII bench's prompts
# (t/unit/bench_pii.c): prose with what real prompts hold every few
# sentences (numbers, times, versions, an address, an email, a phone,
# a quote, a line end), in one user message.  Deterministic.

import json
import random

words = ("the of and to a in is that for it as with was on be by this "
         "request gateway model token stream provider latency budget "
         "nginx upstream buffer worker shared zone cache quota key route "
         "fallback retry answer question summary context window").split()

extras = [" Contact jane.doe@example.com about it.",
          " Version 1.2.3 was released in 2024.",
          " Call +1 415 555 0100 before 10:30.",
          " The server at 10.0.4.17 answered in 250 ms.",
          " Ticket #48213 is \"urgent\".\n"]


def prompt(size, seed):
    rnd = random.Random(seed)

    def sentence():
        s = " ".join(rnd.choice(words) for _ in range(rnd.randint(6, 18)))
        return s[0].upper() + s[1:] + rnd.choice([".", ".", "?", "!"])

    text = ""
    i = 0
    while len(text) < size:
        text += sentence() + " "
        if i % 3 == 1:
            text += extras[(i // 3) % len(extras)]
        i += 1

    return {"model": "gpt-4o-mini", "messages": [
        {"role": "system",
         "content": "You are a helpful assistant for the operations team."},
        {"role": "user", "content": text.strip()}]}


for name, size in (("prompt_2k.json", 1900), ("prompt_50k.json", 50000)):
    with open(name, "w") as f:
        f.write(json.dumps(prompt(size, 7)))
