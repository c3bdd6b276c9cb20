# What clients besides chat completions send: OpenAI's Responses API
# (JSON and its typed events), Anthropic's token counting, and prompt
# cache writes, each metered and priced.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    log_format meter 'ep=$aigw_endpoint p=$aigw_prompt_tokens '
                     'c=$aigw_completion_tokens k=$aigw_cached_tokens '
                     'w=$aigw_cache_write_tokens r=$aigw_reasoning_tokens '
                     'src=$aigw_usage_source cost=$aigw_cost '
                     'stream=$aigw_stream';

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider cut http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut=3/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00 cached_input=1.25;
    aigw_model haiku claude:claude-3-5-haiku input=0.80 output=4.00
               cached_input=0.08 cache_write=1.00;
    aigw_model cut cut:gpt-4o input=2.50 output=10.00;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: Responses API, JSON: the provider's model, usage and cost
3 input tokens at $2.50/M and 7 output at $10/M: 77.5 micro-dollars.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses
{"model":"gpt-4o","input":"hello there"}
--- response_body_like: "object":"response".*"usage":\{"input_tokens":3,
--- access_log
ep=responses p=3 c=7 k=0 w=0 r=0 src=provider cost=0.000078 stream=0



=== TEST 2: Responses API, JSON: cached and reasoning tokens in its names
2 of 3 input tokens cached at $1.25/M, 10 output at $10/M.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses
{"model":"gpt-4o","input":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: cached=2,reasoning=3
--- response_body_like: "input_tokens_details":\{"cached_tokens":2\}
--- access_log
ep=responses p=3 c=10 k=2 w=0 r=3 src=provider cost=0.000105 stream=0



=== TEST 3: Responses API stream: typed events pass whole, usage from the last
No "[DONE]" is added, nothing is asked of the provider's body.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses
{"model":"gpt-4o","input":"hello there","stream":true}
--- response_headers_like
Content-Type: text/event-stream(; charset=utf-8)?
--- response_body_like eval
qr/\Aevent: response\.created\ndata: \{"type":"response\.created","sequence_number":0,.*event: response\.output_text\.delta\n.*event: response\.completed\ndata: \{"type":"response\.completed","sequence_number":\d+,"response":\{.*"usage":\{"input_tokens":3,[^\n]*\}\n\n\z/s
--- response_body_unlike: \[DONE\]|stream_options
--- access_log
ep=responses p=3 c=7 k=0 w=0 r=0 src=provider cost=0.000078 stream=1



=== TEST 4: Responses API stream: the body reaches the provider unchanged
No stream_options is spliced in: the Responses API always reports usage.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses
{"model":"gpt-4o","input":"hello there","stream":true,"store":false}
--- response_body_like: event: response\.completed
--- access_log
ep=responses p=3 c=7 k=0 w=0 r=0 src=provider cost=0.000078 stream=1
--- no_error_log
no usage in



=== TEST 5: Responses API stream cut before its end: estimated, logged
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses HTTP/1.0
{"model":"cut","input":"hello there","stream":true}
--- response_body_like: event: response\.created
--- response_body_unlike: response\.completed
--- access_log eval
qr/^ep=responses p=3 c=\d+ k=0 w=0 r=0 src=estimated cost=0\.\d{6} stream=1$/
--- error_log
was cut after 3 event(s)



=== TEST 6: Responses API stream: an ending event too large to read
Its usage is estimated from the deltas, and a warning says why.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/responses
{"model":"gpt-4o","input":"hello there","stream":true}
--- more_headers
x-mock: words=4000
--- response_body_like: event: response\.completed
--- access_log eval
qr/^ep=responses p=3 c=\d{4} k=0 w=0 r=0 src=estimated cost=0\.\d{6} stream=1$/
--- error_log
no usage in the "response.completed" event (too large to read)



=== TEST 7: Anthropic token counting: passed on, a request, no spend
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages/count_tokens
{"model":"haiku","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
anthropic-version: 2023-06-01
--- response_body: {"input_tokens":3}
--- access_log
ep=messages.count_tokens p=0 c=0 k=0 w=0 r=0 src=- cost=0.000000 stream=0



=== TEST 8: Anthropic token counting: a body without messages is refused
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages/count_tokens
{"model":"haiku"}
--- more_headers
anthropic-version: 2023-06-01
--- error_code: 400
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error",



=== TEST 9: Anthropic prompt cache writes at their own price
3 input tokens: 1 read (at $0.08/M), 1 written (at $1.00/M), 1 plain
($0.80/M); 7 output at $4/M: 29.88 micro-dollars.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
anthropic-version: 2023-06-01
x-mock: cached=1,cache_write=1
--- response_body_like: "cache_creation_input_tokens":1,"cache_read_input_tokens":1
--- access_log
ep=messages p=3 c=7 k=1 w=1 r=0 src=provider cost=0.000030 stream=0



=== TEST 10: the same in a stream, from message_start
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
anthropic-version: 2023-06-01
x-mock: cached=1,cache_write=1
--- response_body_like: event: message_stop
--- access_log
ep=messages p=3 c=7 k=1 w=1 r=0 src=provider cost=0.000030 stream=1



=== TEST 11: a price file's cache_creation_input_token_cost
1 plain input token at $3/M, 2 written at $3.75/M, 7 output at $15/M:
115.5 micro-dollars.
--- http_config
    log_format meter 'p=$aigw_prompt_tokens w=$aigw_cache_write_tokens '
                     'c=$aigw_completion_tokens cost=$aigw_cost';
    aigw_prices ../html/prices.json;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model sonnet claude:claude-sonnet-4;
--- config eval: $::Config
--- user_files
>>> prices.json
{"claude-sonnet-4": {"input_cost_per_token": 3e-06,
                     "output_cost_per_token": 1.5e-05,
                     "cache_read_input_token_cost": 3e-07,
                     "cache_creation_input_token_cost": 3.75e-06}}
--- request
POST /v1/messages
{"model":"sonnet","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}
--- more_headers
anthropic-version: 2023-06-01
x-mock: cache_write=2
--- access_log
p=3 w=2 c=7 cost=0.000116
