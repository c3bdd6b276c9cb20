# Resilience: the first token is the first event with content, not the
# first bytes.  A provider that sends its role chunk (or message_start,
# content_block_start and ping) at once and then keeps the first token
# waiting is still left for the next candidate: those early events are
# held, and the client gets them only with the first event with content.
# aigw_stream_keepalive: SSE comments while the client waits, after
# which a failure is the stream's error event.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';
use AigwMockConf;

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = outcome_log()
    . mock_models({ key_env => 'AIGW_TEST_KEY' },
          role         => 'firstat=1,first=3000',
          quick        => 'firstat=1,first=300',
          ping         => [ 'firstat=3,first=3000', 'anthropic' ],
          rolecut      => 'cut=1',
          empty        => 'words=0',
          tool         => 'tool',
          resplate     => 'firstat=4,first=3000',
          late         => 'first=1200',
          later        => 'first=5000',
          silent       => 'stall=0',
          claudesilent => [ 'stall=3', 'anthropic' ],
          busy         => 'delay=900,status=503',
          paced        => 'pace=800',
          headerslate  => 'delay=700')
    . <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model fast ok:gpt-4o-mini;
    aigw_model haiku claude:claude-3-5-haiku;

    aigw_route role-rescued role fast;
    aigw_route ping-rescued ping haiku;
    aigw_route cut-rescued rolecut fast;
    aigw_route later-rescued later fast;
    aigw_route resp-rescued resplate fast;

    aigw_cache_zone first_token_cache:1m;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 1s;
        aigw_stream_idle_timeout 1s;
        aigw_pass;
    }
    location /ka/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 2s;
        aigw_stream_idle_timeout 2s;
        aigw_stream_keepalive 300ms;
        aigw_pass;
    }
    location /kaq/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 2s;
        aigw_stream_keepalive 300ms;
        aigw_limit global rpm=1000;
        aigw_cache on;
        aigw_pass;
    }
_EOC_

every_block($HttpConfig, $Config);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: the role chunk at once, the first token late: rescued, and the
client gets one stream, from the second provider, with one role chunk
--- request
POST /v1/chat/completions
{"model":"role-rescued","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-[^\n]*"role":"assistant"(?s:(?!"role").)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=ok$/
--- error_log
upstream timed out
aigw: provider "role" failed for "role", falling back to "fast" of provider "ok"
--- timeout: 5



=== TEST 2: message_start, content_block_start and ping at once, the first
delta late: an Anthropic stream is rescued too
--- request
POST /v1/messages
{"model":"ping-rescued","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^event: message_start\n(?s:(?!event: message_start).)*event: message_stop\n[^\n]*\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=claude$/
--- error_log
upstream timed out
aigw: provider "ping" failed for "ping", falling back to "haiku" of provider "claude"
--- timeout: 5



=== TEST 3: the role chunk at once, the first token within the timeout:
the held role chunk goes out first, nothing is lost
--- request
POST /v1/chat/completions
{"model":"quick","stream":true,"messages":[{"role":"user","content":"one two three"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-[^\n]*"role":"assistant"[^\n]*\n\ndata: [^\n]*"content":"Mock[^\n]*\n\n(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=1 p=quick$/
--- no_error_log
[warn]
[error]



=== TEST 4: a stream cut after its role chunk only: the client had
nothing yet, the next candidate answers
--- request
POST /v1/chat/completions
{"model":"cut-rescued","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like: ^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=2 p=ok$/
--- error_log
upstream prematurely closed connection
aigw: provider "rolecut" failed for "rolecut", falling back to "fast" of provider "ok"



=== TEST 5: cut after the role chunk, no candidate left: an error status,
not a stream that looks begun
--- request
POST /v1/chat/completions
{"model":"rolecut","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_body_like eval
qr/^\{"error":\{"message":"No provider of `rolecut` could answer \(1 attempt\(s\)\)\.","type":"[a-z_]+","param":null,"code":"upstream_error"\}\}$/
--- access_log eval
qr/^o=error s=502 a=1 p=rolecut$/



=== TEST 6: an answer without text: its finish chunk ends the wait, it is
not held until the timeout
--- request
POST /v1/chat/completions
{"model":"empty","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like: "finish_reason":"stop"(?s:.)*data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=1 p=empty$/
--- no_error_log
[warn]
[error]
--- timeout: 0.9



=== TEST 7: a tool call is content
--- request
POST /v1/chat/completions
{"model":"tool","stream":true,"messages":[{"role":"user","content":"weather"}],"tools":[{"type":"function","function":{"name":"get","parameters":{"type":"object"}}}]}
--- response_body_like: "tool_calls"(?s:.)*data: \[DONE\]\n\n$
--- access_log eval
qr/^o=complete s=200 a=1 p=tool$/
--- no_error_log
[warn]
[error]
--- timeout: 0.9



=== TEST 8: keep-alives while the first token is late, then the answer
--- request
POST /ka/v1/chat/completions
{"model":"late","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_headers_like
Content-Type: text/event-stream.*
--- response_body_like eval
qr/^(: keep-alive\n\n){2,}data: \{"id":"chatcmpl-[^\n]*"role":"assistant"(?s:(?!keep-alive).)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=1 p=late$/
--- error_log
the stream's status sent with a keep-alive
--- no_error_log
[warn]
[error]
[alert]
--- timeout: 5



=== TEST 9: keep-alives, then no first token in time and no candidate
left: the status went out, so the stream ends with its error event
--- request
POST /ka/v1/chat/completions
{"model":"silent","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^(: keep-alive\n\n){3,}data: \{"error":\{"message":"The providers of `silent` did not answer in time \(1 attempt\(s\)\)\.","type":"[a-z_]+","param":null,"code":"upstream_timeout"\}\}\n\n$/
--- access_log eval
qr/^o=timeout s=200 a=1 p=silent$/
--- error_log
upstream timed out
keep-alive(s), which ends with an error event
--- no_error_log
[alert]
--- timeout: 5



=== TEST 10: keep-alives, then a rescue: the client's one stream goes on
with the next candidate's answer
--- request
POST /ka/v1/chat/completions
{"model":"later-rescued","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^(: keep-alive\n\n){3,}data: \{"id":"chatcmpl-(?s:(?!keep-alive).)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=ok$/
--- error_log
aigw: provider "later" failed for "later", falling back to "fast" of provider "ok"
--- no_error_log
[alert]
--- timeout: 5



=== TEST 11: keep-alives, then an error status: not passed as a stream's
body, the stream ends with its error event
--- request
POST /ka/v1/chat/completions
{"model":"busy","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^(: keep-alive\n\n){2,}data: \{"error":\{"message":"No provider of `busy` could answer \(1 attempt\(s\)\)\.","type":"[a-z_]+","param":null,"code":"upstream_error"\}\}\n\n$/
--- access_log eval
qr/^o=error s=200 a=1 p=busy$/
--- error_log
aigw: provider "busy" answered 503, not a stream, to a stream the client has begun
--- no_error_log
[alert]
--- timeout: 5



=== TEST 12: an Anthropic client: keep-alives, then its error event
--- request
POST /ka/v1/messages
{"model":"claudesilent","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^(: keep-alive\n\n){3,}event: error\ndata: \{"type":"error","error":\{"type":"[a-z_]+","message":"The providers of `claudesilent` did not answer in time \(1 attempt\(s\)\)\."\}\}\n\n$/
--- access_log eval
qr/^o=timeout s=200 a=1 p=claudesilent$/
--- no_error_log
[alert]
--- timeout: 5



=== TEST 13: keep-alives in the long gaps of a slow stream, each between
two events
--- request
POST /ka/v1/chat/completions
{"model":"paced","stream":true,"messages":[{"role":"user","content":"one two"}]}
--- response_body_like eval
qr/^(: keep-alive\n\n)*data: \{"id":"chatcmpl-[^\n]*"role"[^\n]*\n\n(?s:.)*\}\n\n(: keep-alive\n\n)+data: \{(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=1 p=paced$/
--- no_error_log
[warn]
[error]
[alert]
--- timeout: 8



=== TEST 14: a Responses stream: response.created, .in_progress,
.output_item.added and .content_part.added at once, the first
output_text.delta late: rescued, one response.created to the client
--- request
POST /v1/responses
{"model":"resp-rescued","stream":true,"input":"hi"}
--- response_body_like eval
qr/^event: response\.created\n(?s:(?!event: response\.created).)*event: response\.output_text\.delta\n(?s:.)*event: response\.completed\n[^\n]*\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=ok$/
--- error_log
upstream timed out
aigw: provider "resplate" failed for "resplate", falling back to "fast" of provider "ok"
--- timeout: 5



=== TEST 15: the status a keep-alive sends carries the gateway's own
headers, known before the answer: the quota's numbers, the cache's
(the provider's headers came, its first token is late)
--- request
POST /kaq/v1/chat/completions
{"model":"late","stream":true,"messages":[{"role":"user","content":"keep-alive headers"}]}
--- response_headers
x-ratelimit-limit-requests: 1000
X-AIGW-Cache: MISS
--- response_body_like eval
qr/^(: keep-alive\n\n){2,}data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- error_log
the stream's status sent with a keep-alive
--- timeout: 5



=== TEST 16: the same when the provider has not answered at all yet:
the gateway's headers, once each
--- request
POST /kaq/v1/chat/completions
{"model":"headerslate","stream":true,"messages":[{"role":"user","content":"keep-alive headers"}]}
--- response_headers
x-ratelimit-limit-requests: 1000
X-AIGW-Cache: MISS
--- response_body_like eval
qr/^(: keep-alive\n\n){2,}data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- error_log
the stream's status sent with a keep-alive
--- timeout: 5
