# Resilience: a stream that fails after its status went out ends with the
# client's format's error event, never with a clean end; the first token
# and the gaps between events have timeouts of their own; a late first
# token moves to the next candidate before the client got anything; the
# request has a deadline.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    log_format outcome 'o=$aigw_outcome s=$status a=$aigw_attempts '
                       'p=$aigw_provider c=$aigw_completion_tokens '
                       'src=$aigw_usage_source';

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider cut http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut=2/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claudecut http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut=4/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider stall http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/stall=2/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider late http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/first=3000/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider slow http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/pace=400/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider hang http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/hang/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model fast ok:gpt-4o-mini;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_model cut cut:gpt-4o-mini;
    aigw_model claudecut claudecut:claude-3-5-haiku;
    aigw_model stall stall:gpt-4o-mini;
    aigw_model late late:gpt-4o-mini;
    aigw_model slow slow:gpt-4o-mini;
    aigw_model hang hang:gpt-4o-mini;

    aigw_route rescued late fast;
    aigw_route hung hang fast;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 1s;
        aigw_stream_idle_timeout 1s;
        aigw_pass;
    }
    location /deadline/v1/ {
        access_log logs/access.log outcome;
        aigw_timeout 1s;
        aigw_pass;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a complete stream is "complete"
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"fast","stream":true,"messages":[{"role":"user","content":"hello"}]}
--- response_body_like: data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=1 p=ok c=\d+ src=provider$/
--- no_error_log
[warn]
[error]



=== TEST 2: a cut OpenAI stream ends with an error event, not a clean end
The chunked response is ended properly after the event, so that the
client reads the event rather than a broken connection.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"cut","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:(?!\[DONE\]).)*\n\ndata: \{"error":\{"message":"The provider's stream was cut after 2 event\(s\); the answer is incomplete\.","type":"[a-z_]+","param":null,"code":"stream_cut"\}\}\n\n$/
--- access_log eval
qr/^o=cut s=200 a=1 p=cut c=\d+ src=estimated$/
--- error_log
upstream prematurely closed connection
aigw: stream from provider "cut" was cut after 2 event(s), ended with an error event



=== TEST 3: a cut Anthropic stream ends with "event: error"
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"claudecut","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^event: message_start\n(?s:(?!message_stop).)*\n\nevent: error\ndata: \{"type":"error","error":\{"type":"[a-z_]+","message":"The provider's stream was cut after 4 event\(s\); the answer is incomplete\."\}\}\n\n$/
--- access_log eval
qr/^o=cut s=200 a=1 p=claudecut /
--- error_log
aigw: stream from provider "claudecut" was cut after 4 event(s), ended with an error event



=== TEST 4: a stream that stalls past aigw_stream_idle_timeout ends so
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"stall","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:(?!\[DONE\]).)*\n\ndata: \{"error":\{"message":"The provider stopped sending the answer after 2 event\(s\); it is incomplete\.","type":"[a-z_]+","param":null,"code":"stream_stalled"\}\}\n\n$/
--- access_log eval
qr/^o=stalled s=200 a=1 p=stall /
--- error_log
upstream timed out
aigw: stream from provider "stall" was stalled after 2 event(s), ended with an error event
--- timeout: 5



=== TEST 5: a slow but steady stream is not stalled: the idle timeout is
between events, not for the whole answer
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"slow","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine"}]}
--- response_body_like: data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=1 p=slow /
--- no_error_log
[warn]
[error]
--- timeout: 10



=== TEST 6: a first token later than aigw_first_token_timeout: rescued by
the next candidate, the client never saw the late one
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rescued","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like: ^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=2 p=ok /
--- error_log
upstream timed out
aigw: provider "late" failed for "late", falling back to "fast" of provider "ok"
--- timeout: 5



=== TEST 7: the first-token timeout is for streams: a JSON answer waits
its read timeout
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"late","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: ^\{"id":"chatcmpl-
--- no_error_log
[error]



=== TEST 8: the deadline ends a request no provider answered in time
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /deadline/v1/chat/completions
{"model":"hang","messages":[{"role":"user","content":"hi"}]}
--- error_code: 504
--- response_body_like eval
qr/^\{"error":\{"message":"The providers of `hang` did not answer within the gateway's deadline \(1 attempt\(s\)\)\.","type":"[a-z_]+","param":null,"code":"upstream_timeout"\}\}$/
--- access_log eval
qr/^o=timeout s=504 a=1 p=hang /
--- error_log
aigw: "hang" ran out of its 1000 ms deadline after 1 attempt(s)
--- timeout: 5



=== TEST 9: the deadline is for the request: no candidate is tried after it
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /deadline/v1/chat/completions
{"model":"hung","messages":[{"role":"user","content":"hi"}]}
--- error_code: 504
--- access_log eval
qr/^o=timeout s=504 a=1 p=hang /
--- error_log
aigw: "hung" ran out of its 1000 ms deadline after 1 attempt(s)
--- timeout: 5



=== TEST 10: the deadline ends a stream already under way honestly
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /deadline/v1/chat/completions
{"model":"slow","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve thirteen"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:(?!\[DONE\]).)*\n\ndata: \{"error":\{"message":"The answer ran out of the gateway's 1000 ms deadline after \d+ event\(s\); it is incomplete\.","type":"[a-z_]+","param":null,"code":"upstream_timeout"\}\}\n\n$/
--- access_log eval
qr/^o=timeout s=200 a=1 p=slow /
--- timeout: 5



=== TEST 11: an error answer is "error"
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"nope","messages":[{"role":"user","content":"hi"}]}
--- error_code: 404
--- access_log eval
qr/^o=error s=404 /
