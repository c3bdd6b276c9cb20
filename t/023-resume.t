# Resilience: aigw_stream_resume.  A stream cut, or stalled past its idle
# timeout, after the client got part of the answer, goes on with the next
# model of the route in the same client stream: the text sent goes to it
# as an assistant prefill (aigw_model ... prefill), or with a request to
# continue; the client gets one answer, one role chunk, one end; usage is
# the sum; $aigw_outcome is "resumed".  A resume that fails ends with the
# first failure's error event.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';
use AigwMockConf;

# The providers have no key: the suite reads the mock's /_mock/last,
# which shows every header the gateway sent.

our $HttpConfig = outcome_log('c=$aigw_completion_tokens '
                               . 'src=$aigw_usage_source')
    . mock_models({},
          cut       => 'cut=3,chars=5',
          stall     => 'stall=3,chars=5',
          claudecut => [ 'cut=5,chars=5', 'anthropic' ],
          refuses   => 'status=400',
          tool      => 'tool,cut=2')
    . <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1 format=anthropic;

    aigw_model fast ok:gpt-4o-mini;
    aigw_model fast-prefill ok:gpt-4o-mini prefill;
    aigw_model haiku claude:claude-3-5-haiku prefill;
    aigw_model cut-priced cut:gpt-4o-mini input=1000000 output=1000000;
    aigw_model fast-priced ok:gpt-4o-mini prefill input=1000000 output=1000000;

    aigw_metrics_zone resume_metrics:1m;

    aigw_route prefilled cut fast-prefill;
    aigw_route continued cut fast;
    aigw_route stalled stall fast-prefill;
    aigw_route claude claudecut haiku;
    aigw_route refused cut refuses;
    aigw_route tools tool fast-prefill;
    aigw_route priced-first cut-priced fast-prefill;
    aigw_route priced-last cut fast-priced;

    log_format cost 'o=$aigw_outcome p=$aigw_prompt_tokens '
                    'c=$aigw_completion_tokens cost=$aigw_cost';
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log outcome;
        aigw_stream_idle_timeout 1s;
        aigw_stream_resume on;
        aigw_pass;
    }
    location /cost/v1/ {
        access_log logs/access.log cost;
        aigw_stream_idle_timeout 1s;
        aigw_stream_resume on;
        aigw_pass;
    }
    location /off/v1/ {
        access_log logs/access.log outcome;
        aigw_pass;
    }
    location = /metrics {
        access_log off;
        aigw_metrics;
    }
    location = /last {
        access_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/_mock/last;
    }
_EOC_

every_block($HttpConfig, $Config);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: cut after "Mock answe": resumed with a prefill, the client
gets one answer, the rest from the second provider, one role, one end
--- request
POST /v1/chat/completions
{"model":"prefilled","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/^data: \{[^\n]*"role":"assistant"(?s:(?!"role"|Mock answer).)*"content":"Mock "(?s:(?!"role"|Mock answer).)*"content":"answe"(?s:(?!"role"|Mock answer).)*"content":"r to: (?s:(?!"role"|Mock answer|DONE).)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=resumed s=200 a=2 p=ok c=8 src=provider$/
--- error_log
aigw: stream from provider "cut" was cut after 3 event(s), resumed on the next model
aigw: stream resumed on "fast-prefill" of provider "ok" after 3 event(s) of "cut"
--- no_error_log
[alert]



=== TEST 2: the second provider got the text as an assistant prefill, at
the end of the messages
--- request eval
["POST /v1/chat/completions
{\"model\":\"prefilled\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}",
"GET /last"]
--- response_body_like eval
[qr/data: \[DONE\]\n\n$/,
qr/"body": "\{\\"model\\":\\"gpt-4o-mini\\",\\"stream\\":true,\\"messages\\":\[\{\\"role\\":\\"user\\",\\"content\\":\\"one two three\\"\},\{\\"role\\":\\"assistant\\",\\"content\\":\\"Mock answe\\"\}\]/]



=== TEST 3: a model without a prefill: the text as an assistant message,
then a request to continue it
--- request eval
["POST /v1/chat/completions
{\"model\":\"continued\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}",
"GET /last"]
--- response_body_like eval
[qr/^data: \{[^\n]*"role":"assistant"(?s:(?!"role").)*"content":"answe"(?s:(?!"role").)*data: \[DONE\]\n\n$/,
qr/\{\\"role\\":\\"assistant\\",\\"content\\":\\"Mock answe\\"\},\{\\"role\\":\\"user\\",\\"content\\":\\"Continue exactly where your last message stops, without repeating any of it\.\\"\}\]/]
--- access_log eval
[qr/^o=resumed s=200 a=2 p=ok /]



=== TEST 4: a stream stalled past the idle timeout is resumed too
--- request
POST /v1/chat/completions
{"model":"stalled","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/^data: \{[^\n]*"role":"assistant"(?s:(?!"role"|Mock answer).)*"content":"answe"(?s:(?!"role"|Mock answer).)*"content":"r to: (?s:(?!"role"|Mock answer|DONE).)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=resumed s=200 a=2 p=ok c=8 src=provider$/
--- error_log
upstream timed out
aigw: stream from provider "stall" was stalled after 3 event(s), resumed on the next model
--- timeout: 5



=== TEST 5: an Anthropic stream: one message_start, the rest after the
prefill, one message_stop
--- request
POST /v1/messages
{"model":"claude","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/^event: message_start\ndata: [^\n]*\n\n(?s:(?!event: message_start|Mock answer).)*"text":"Mock "(?s:(?!event: message_start|Mock answer).)*"text":"answe"(?s:(?!event: message_start|event: content_block_start|event: ping|Mock answer).)*"text":"r to: (?s:(?!event: message_start|Mock answer).)*event: message_stop\n[^\n]*\n\n$/
--- access_log eval
qr/^o=resumed s=200 a=2 p=claude c=8 src=provider$/



=== TEST 6: the resume fails (the second provider refuses the request):
the stream ends with the first failure's error event, not the second's
--- request
POST /v1/chat/completions
{"model":"refused","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:(?!\[DONE\]).)*"content":"answe"(?s:(?!\[DONE\]).)*\n\ndata: \{"error":\{"message":"The provider's stream was cut after 3 event\(s\); the answer is incomplete\.","type":"[a-z_]+","param":null,"code":"stream_cut"\}\}\n\n$/
--- access_log eval
qr/^o=cut s=200 a=2 p=refuses /
--- error_log
aigw: provider "refuses" answered 400, not a stream, to a stream the client has begun
aigw: stream from provider "cut" was cut after 3 event(s), ended with an error event



=== TEST 7: a stream with a tool call in flight is not resumed
--- request
POST /v1/chat/completions
{"model":"tools","stream":true,"messages":[{"role":"user","content":"weather"}],"tools":[{"type":"function","function":{"name":"get","parameters":{"type":"object"}}}]}
--- response_body_like: "code":"stream_cut"\}\}\n\n$
--- access_log eval
qr/^o=cut s=200 a=1 p=tool /



=== TEST 8: without aigw_stream_resume, a cut stream ends with its error
event, as before
--- request
POST /off/v1/chat/completions
{"model":"prefilled","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like: "code":"stream_cut"\}\}\n\n$
--- access_log eval
qr/^o=cut s=200 a=1 p=cut /



=== TEST 9: several choices (n = 2) are not resumed: one text cannot
continue them
--- request
POST /v1/chat/completions
{"model":"prefilled","stream":true,"n":2,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like: "code":"stream_cut"\}\}\n\n$
--- access_log eval
qr/^o=cut s=200 a=1 p=cut /



=== TEST 10: the metrics count the resume, and the failure as a fallback
--- request eval
["POST /v1/chat/completions
{\"model\":\"prefilled\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}",
"GET /metrics"]
--- response_body_like eval
[qr/data: \[DONE\]\n\n$/,
qr/\A(?=(?s:.)*^aigw_stream_resumes_total\{[^}]*\} 1$)(?=(?s:.)*^aigw_fallbacks_total\{[^}]*\} 1$)/m]



=== TEST 11: each attempt at its own model's prices: the cut model's
estimated tokens at $1 a token, the free model's tokens free
--- request
POST /cost/v1/chat/completions
{"model":"priced-first","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=resumed p=\d+ c=\d+ cost=8\.000000$/
--- error_log
of "cut-priced", its 5 prompt and 3 completion token(s) counted



=== TEST 12: and the other way: the sum's tokens less the cut model's
5 + 3 priced, the last model's
--- request
POST /cost/v1/chat/completions
{"model":"priced-last","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=resumed p=(\d+) c=(\d+) cost=(??{ $1 + $2 - 8 })\.000000$/
--- error_log
of "cut", its 5 prompt and 3 completion token(s) counted
