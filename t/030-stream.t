# Streaming: Server-Sent Events pass through as the provider sends them,
# never held in a buffer; a cut stream or a client that leaves ends the
# provider connection.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider slow http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/pace=3000/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider cut http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut=2/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider claudeslow http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/pace=3000/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model fast ok:gpt-4o-mini;
    aigw_model slow slow:gpt-4o-mini;
    aigw_model cut cut:gpt-4o-mini;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_model haikuslow claudeslow:claude-3-5-haiku;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        aigw_pass;
        add_header X-Stream $aigw_stream;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an OpenAI stream passes through whole
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"messages":[{"role":"user","content":"hello stream"}]}
--- response_headers
Content-Type: text/event-stream; charset=utf-8
X-Stream: 1
!Content-Length
--- response_body_like: ^data: \{"id":"chatcmpl-[^"]+","object":"chat\.completion\.chunk".*"delta":\{"role":"assistant".*"finish_reason":"stop".*\n\ndata: \[DONE\]\n\n$
--- no_error_log
[error]
[warn]



=== TEST 2: each event reaches the client before the next is sent
The provider waits 3 s between events; the client gives up after 2 s and
must by then hold the first event, and not the last.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- timeout: 2
--- abort
--- ignore_response
--- error_log
client prematurely closed connection, so upstream connection is closed too
--- wait: 1



=== TEST 3: the first event arrives before the timeout
HTTP/1.0, so that the part received is the body as it is, unchunked.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- timeout: 2
--- abort
--- response_body_like: ^data: \{"id":"chatcmpl-[^"]+".*"delta":\{"role":"assistant"(?s:(?!\[DONE\]).)*$



=== TEST 4: an Anthropic stream passes through, event names included
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_headers
Content-Type: text/event-stream; charset=utf-8
--- response_body_like: ^event: message_start\ndata: \{"type":"message_start".*event: content_block_delta\ndata: .*event: message_delta\ndata: .*"output_tokens":\d+.*event: message_stop\ndata: \{"type":"message_stop"\}\n\n$
--- no_error_log
[error]
[warn]



=== TEST 5: an Anthropic stream is not held either
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages HTTP/1.0
{"model":"haikuslow","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- timeout: 2
--- abort
--- response_body_like: ^event: message_start\ndata: \{"type":"message_start"(?s:(?!message_stop).)*$



=== TEST 6: a stream cut by the provider is cut for the client and logged
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions HTTP/1.0
{"model":"cut","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- abort
--- response_body_like: ^data: \{.*\n\n$
--- error_log
upstream prematurely closed connection
aigw: stream from provider "cut" was cut after 2 event(s)



=== TEST 7: "stream": false is a JSON answer
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"fast","stream":false,"messages":[{"role":"user","content":"hi"}]}
--- response_headers
Content-Type: application/json
X-Stream: 0
--- response_body_like: ^\{"id":"chatcmpl-



=== TEST 8: an event larger than the gateway keeps whole passes on as it is
A 100 KB event: the usage chunk can no longer be kept from the client,
which gets the provider's stream unchanged; nothing breaks.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"messages":[{"role":"user","content":"big"}]}
--- more_headers
x-mock: bigword=100000
--- response_body_like: ^data: (?s:.*)x{50000}x{50000}(?s:.*)data: \[DONE\]\n\n$
--- error_log
aigw: an event over 65536 bytes, the stream is passed on as it is
--- no_error_log
[alert]
[crit]



=== TEST 9: a large event that fits is passed whole, the usage kept back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"messages":[{"role":"user","content":"big"}]}
--- more_headers
x-mock: bigword=30000
--- response_body_like: ^(?s)(?!.*"choices":\[\]).*x{30000}.*data: \[DONE\]\n\n$
--- no_error_log
[warn]
[alert]
