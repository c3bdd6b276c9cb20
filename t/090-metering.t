# Metering: tokens, cost and times of every request, from the provider's
# usage as it passes, or estimated when there is none.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    log_format meter 'p=$aigw_prompt_tokens c=$aigw_completion_tokens '
                     't=$aigw_total_tokens k=$aigw_cached_tokens '
                     'r=$aigw_reasoning_tokens src=$aigw_usage_source '
                     'cost=$aigw_cost stream=$aigw_stream '
                     'ttft=$aigw_ttft lat=$aigw_latency';

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider cut http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut=3/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider broken http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/badjson/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00 cached_input=1.25;
    aigw_model free ok:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku input=0.80 output=4.00
               cached_input=0.08;
    aigw_model embed ok:text-embedding-3-small input=0.02;
    aigw_model cut cut:gpt-4o input=2.50 output=10.00;
    aigw_model broken broken:gpt-4o input=2.50 output=10.00;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a JSON answer: usage, cost in integer micro-dollars
3 input tokens at $2.50/M and 7 output at $10/M: 77.5 micro-dollars.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}
--- response_body_like: "usage":\{"prompt_tokens":3,"completion_tokens":7
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=0 ttft=\d+\.\d{3} lat=\d+\.\d{3}$/



=== TEST 2: cached input at its own price, reasoning tokens counted (1)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: cached=2
--- response_body_like eval
qr/"cached_tokens":2/
--- access_log eval
qr/^p=3 c=7 t=10 k=2 r=0 src=provider cost=0\.000075 /



=== TEST 3: cached input at its own price, reasoning tokens counted (2)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: reasoning=3
--- response_body_like eval
qr/"reasoning_tokens":3/
--- access_log eval
qr/^p=3 c=10 t=13 k=0 r=3 src=provider cost=0\.000108 /



=== TEST 4: a stream: the gateway asks for usage, the client never sees it (1)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello there"}]}
--- response_body_like eval
qr/^(?s)(?!.*"choices":\[\])(?!.*"usage":\{).*"finish_reason":"stop".*data: \[DONE\]\n\n$/
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=1 /



=== TEST 5: a stream whose client asked for usage keeps it
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}
--- response_body_like: "choices":\[\],"usage":\{"prompt_tokens":3,"completion_tokens":7
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=1 /



=== TEST 6: Anthropic, JSON and stream, with the prompt cache (1)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}
--- response_body_like eval
qr/"output_tokens":7/
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000030 stream=0 /



=== TEST 7: Anthropic, JSON and stream, with the prompt cache (2)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}
--- response_body_like eval
qr/event: message_stop/
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000030 stream=1 /



=== TEST 8: Anthropic, JSON and stream, with the prompt cache (3)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: cached=2
--- response_body_like eval
qr/event: message_stop/
--- access_log eval
qr/^p=3 c=7 t=10 k=2 r=0 src=provider cost=0\.000029 stream=1 /



=== TEST 9: a stream cut before its usage: an estimate, said so
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"cut","stream":true,"messages":[{"role":"user","content":"hello there, how are you"}]}
--- response_body_like: ^data:
--- access_log eval
qr/^p=[1-9]\d* c=[1-9]\d* t=\d+ k=0 r=0 src=estimated cost=0\.000\d{3} stream=1 /



=== TEST 10: an answer without usage: an estimate
Broken JSON reaches the client only with the answer check off.
--- http_config eval: $::HttpConfig
--- config
    location /v1/ {
        access_log logs/access.log meter;
        aigw_answer_buffer 0;
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"broken","messages":[{"role":"user","content":"hello there, how are you"}]}
--- response_body_like: ^\{
--- access_log eval
qr/^p=[1-9]\d* c=0 t=\d+ k=0 r=0 src=estimated /



=== TEST 11: embeddings count input tokens
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/embeddings
{"model":"embed","input":"hello there"}
--- response_body_like: "embedding"
--- access_log eval
qr/^p=3 c=0 t=3 k=0 r=0 src=provider cost=0\.000000 stream=0 /



=== TEST 12: no price, no cost; a refused request, no tokens (1)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"free","messages":[{"role":"user","content":"hello there"}]}
--- error_code: 200
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000000 /



=== TEST 13: no price, no cost; a refused request, no tokens (2)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"nope","messages":[]}
--- error_code: 404
--- access_log eval
qr/^p=0 c=0 t=0 k=0 r=0 src=- cost=0\.000000 stream=0 ttft=0\.000 /



=== TEST 14: the time to the first token of a paced stream
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: delay=300,pace=100
--- response_body_like: \[DONE\]
--- access_log eval
qr/ ttft=0\.(?:[3-9]\d\d) lat=(?:0\.[5-9]\d\d|[1-9]\.\d{3})$/



=== TEST 15: the provider is asked for stream usage
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":false},\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}",
"GET /_mock/last"
]
--- response_body_like eval
[
qr/^(?s)(?!.*"choices":\[\]).*data: \[DONE\]\n\n$/,
qr/\\"stream_options\\":\{\\"include_usage\\":true\}/
]



=== TEST 16: prices from a price file in LiteLLM's format
"ok/gpt-4o" is looked up first, then "gpt-4o"; a model with prices of its
own keeps them.
--- http_config
    log_format meter 'p=$aigw_prompt_tokens c=$aigw_completion_tokens '
                     'cost=$aigw_cost';
    aigw_prices ../html/prices.json;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model listed ok:gpt-4o-mini;
    aigw_model own ok:gpt-4o input=0.00 output=1.00;
--- config
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
    }
--- user_files
>>> prices.json
{"sample_spec": {"input_cost_per_token": 0},
 "gpt-4o-mini": {"input_cost_per_token": 1.5e-07,
                 "output_cost_per_token": 6e-07},
 "ok/gpt-4o-mini": {"input_cost_per_token": 2.5e-06,
                    "output_cost_per_token": 1e-05,
                    "cache_read_input_token_cost": 1.25e-06,
                    "litellm_provider": "openai", "mode": "chat"},
 "gpt-4o": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2e-05}}
--- request
POST /v1/chat/completions
{"model":"listed","messages":[{"role":"user","content":"hello there"}]}
--- access_log
p=3 c=7 cost=0.000078



=== TEST 17: a model's own prices win over the file
--- http_config
    log_format meter 'p=$aigw_prompt_tokens c=$aigw_completion_tokens '
                     'cost=$aigw_cost';
    aigw_prices ../html/prices.json;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model own ok:gpt-4o input=0.00 output=1.00;
--- config
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
    }
--- user_files
>>> prices.json
{"gpt-4o": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2e-05}}
--- request
POST /v1/chat/completions
{"model":"own","messages":[{"role":"user","content":"hello there"}]}
--- access_log
p=3 c=7 cost=0.000007



=== TEST 18: variables read at header time settle nothing (JSON)
add_header reads them before the answer's body has passed: they show
what is known so far, and the access log gets the whole request.
--- http_config eval: $::HttpConfig
--- config
    location /v1/ {
        access_log logs/access.log meter;
        add_header X-Latency $aigw_latency always;
        add_header X-Tokens $aigw_total_tokens always;
        add_header X-Cost $aigw_cost always;
        add_header X-Source $aigw_usage_source always;
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}
--- response_headers_like
X-Latency: \d+\.\d{3}
X-Cost: 0\.\d{6}
--- response_body_like: "usage":\{"prompt_tokens":3,"completion_tokens":7
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=0 /



=== TEST 19: variables read at header time settle nothing (stream)
--- http_config eval: $::HttpConfig
--- config
    location /v1/ {
        access_log logs/access.log meter;
        add_header X-Latency $aigw_latency always;
        add_header X-Cost $aigw_cost always;
        add_header X-Source $aigw_usage_source always;
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello there"}]}
--- response_headers
X-Cost: 0.000000
--- response_body_like: data: \[DONE\]
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=1 /



=== TEST 20: a cost past 2^64 micro-dollars saturates, and is logged
10^8 reasoning tokens at $9,999,999 a million.
--- config
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
    }
--- http_config eval
$::HttpConfig . '
    aigw_model dear ok:gpt-4o input=9999999 output=9999999;
'
--- request
POST /v1/chat/completions
{"model":"dear","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: reasoning=100000000
--- access_log eval
qr/^p=3 c=100000007 t=100000010 k=0 r=100000000 src=provider cost=18446744\.073710 /
--- error_log eval
qr/\[warn\].*aigw: the cost of 3 prompt, 0 cached and 100000007 completion tokens of "dear" does not fit in 64 bits/



=== TEST 21: a paced stream, each event its own read: usage withheld
The gateway asked for usage; each chunk comes alone, read whole (the
filter's one-event path), the usage chunk too: the client never sees it.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: pace=20,piece=1
--- response_body_like eval
qr/^(?s)(?!.*"choices":\[\])(?!.*"usage":\{).*"finish_reason":"stop".*data: \[DONE\]\n\n$/
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=1 /



=== TEST 22: a paced stream whose client asked for usage keeps it
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: pace=20,piece=1
--- response_body_like eval
qr/"choices":\[\],"usage":\{"prompt_tokens":3,"completion_tokens":7.*data: \[DONE\]\n\n$/s
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000078 stream=1 /



=== TEST 23: an estimate over many events, read together or one a read
A stream cut after 12 events of one word: the same estimate whether the
events come in one read or one a read.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions HTTP/1.0
{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}",
"POST /v1/chat/completions HTTP/1.0
{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}"
]
--- more_headers eval
[
"x-mock: cut=12,piece=1,words=30",
"x-mock: cut=12,piece=1,words=30,pace=20"
]
--- response_body_like eval
[qr/^data:/, qr/^data:/]
--- access_log eval
[
qr/^p=4 c=5 t=9 k=0 r=0 src=estimated cost=0\.000060 stream=1 /,
qr/^p=4 c=5 t=9 k=0 r=0 src=estimated cost=0\.000060 stream=1 /
]



=== TEST 24: a paced Anthropic stream, each event its own read
message_start and message_delta read for usage as they come alone, the
stream passed as it is.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: pace=20,piece=1
--- response_body_like eval
qr/^event: message_start\ndata: .*event: content_block_delta\ndata: .*event: message_stop\ndata: [^\n]*\n\n$/s
--- access_log eval
qr/^p=3 c=7 t=10 k=0 r=0 src=provider cost=0\.000030 stream=1 /



=== TEST 25: an Anthropic stream cut short, the events together or one a read
message_start's usage, the same whichever way the events come.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/messages HTTP/1.0
{\"model\":\"haiku\",\"stream\":true,\"max_tokens\":50,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}",
"POST /v1/messages HTTP/1.0
{\"model\":\"haiku\",\"stream\":true,\"max_tokens\":50,\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}"
]
--- more_headers eval
[
"x-mock: cut=14,piece=1,words=30",
"x-mock: cut=14,piece=1,words=30,pace=20"
]
--- response_body_like eval
[qr/^event: message_start/, qr/^event: message_start/]
--- access_log eval
[
qr/^p=3 c=1 t=4 k=0 r=0 src=provider cost=0\.000006 stream=1 /,
qr/^p=3 c=1 t=4 k=0 r=0 src=provider cost=0\.000006 stream=1 /
]
