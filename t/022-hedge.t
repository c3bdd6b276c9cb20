# aigw_hedge: a stream whose first token is late gets a second request,
# to the next candidate, without the first ending; whichever has its
# first token first serves, the other is closed and metered: pt= is the
# winner's prompt tokens (the mock's: 1 for "hi") and the loser's,
# estimated (2); cost= prices each at its own model's prices.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';
use AigwMockConf;

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = outcome_log('pt=$aigw_prompt_tokens')
    . mock_models({ key_env => 'AIGW_TEST_KEY' },
          slow       => 'firstat=1,first=2500',
          claudeslow => [ 'firstat=3,first=2500', 'anthropic' ],
          soon       => 'first=700',
          busy       => 'status=503',
          reset      => 'delay=600,reset',
          hedgelate  => 'first=1200',
          slow2      => 'first=2500',
          sooncut    => 'first=400,cut=3,chars=5',
          busylate   => 'delay=700,status=503')
    . <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model fast ok:gpt-4o-mini;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_provider refused http://127.0.0.1:1/v1 key_env=AIGW_TEST_KEY;
    aigw_model refused refused:gpt-4o-mini;

    aigw_keepalive 16;
    aigw_metrics_zone hedge_metrics:1m;

    aigw_route slow-fast slow fast;
    aigw_route slow-slow slow slow2;
    aigw_route soon-refused soon refused;
    aigw_route claude-slow-fast claudeslow haiku;
    aigw_route soon-slow soon slow;
    aigw_route soon-busy soon busy;
    aigw_route reset-late reset hedgelate;
    aigw_route busylate-late busylate hedgelate;
    aigw_route slow-soon slow soon;
    aigw_route slow-sooncut-fast slow sooncut fast;

    aigw_model slow-priced slow:gpt-4o-mini input=1000000 output=1000000;
    aigw_route priced-fast slow-priced fast;
    aigw_route soon-priced soon slow-priced;
    log_format cost 'o=$aigw_outcome pt=$aigw_prompt_tokens cost=$aigw_cost';
_EOC_

# a whole OpenAI stream, from one provider: one role chunk, one end
our $OneStream = qr/^data: \{"id":"chatcmpl-[^\n]*"role":"assistant"(?s:(?!"role").)*data: \[DONE\]\n\n$/;

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_pass;
    }
    location /deadline/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_timeout 900ms;
        aigw_pass;
    }
    location /ka/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_stream_keepalive 100ms;
        aigw_hedge 300ms;
        aigw_pass;
    }
    location /noft/v1/ {
        access_log logs/access.log outcome;
        aigw_hedge 300ms;
        aigw_pass;
    }
    location = /metrics {
        access_log off;
        aigw_metrics;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /nut/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_next_upstream_timeout 500ms;
        aigw_pass;
    }
    location /nutr/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_next_upstream_timeout 500ms;
        aigw_stream_resume on;
        aigw_pass;
    }
    location /resume/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_stream_resume on;
        aigw_pass;
    }
    location /cost/v1/ {
        access_log logs/access.log cost;
        aigw_first_token_timeout 5s;
        aigw_hedge 300ms;
        aigw_pass;
    }
    location /nohedge/v1/ {
        access_log logs/access.log outcome;
        aigw_first_token_timeout 5s;
        aigw_pass;
    }
_EOC_

every_block($HttpConfig, $Config);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: the first token late: the hedge on the next candidate has its
first token first and serves the whole stream, one role chunk
--- request
POST /v1/chat/completions
{"model":"slow-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=hedged s=200 a=2 p=ok pt=3$/
--- error_log eval
[qr/no first token from provider "slow" after \d+ ms, hedged on "fast" of provider "ok"/,
 qr/the hedge on "fast" had its first token first, after \d+ ms; "slow" of provider "slow" left, [1-9]\d* prompt token\(s\) estimated/]
--- timeout: 2



=== TEST 2: Anthropic: message_start, content_block_start and ping at
once, the first delta late: the hedge serves
--- request
POST /v1/messages
{"model":"claude-slow-fast","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^event: message_start\n(?s:(?!event: message_start).)*event: message_stop\n[^\n]*\n\n$/
--- access_log eval
qr/^o=hedged s=200 a=2 p=claude pt=\d+$/
--- error_log
had its first token first
--- timeout: 2



=== TEST 3: the first attempt's first token comes before the hedge's:
the first serves, the hedge is closed and metered
--- request
POST /v1/chat/completions
{"model":"soon-slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=soon pt=3$/
--- error_log eval
[qr/hedged on "slow" of provider "slow"/,
 qr/the hedge on "slow" of provider "slow" closed after \d+ ms, [1-9]\d* prompt token\(s\) estimated/]
--- no_error_log
had its first token first
--- timeout: 3



=== TEST 4: the hedge fails (503): the first attempt goes on and serves
--- request
POST /v1/chat/completions
{"model":"soon-busy","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=2 p=soon pt=1$/
--- error_log
the hedge's provider answered 503
the hedge on "busy" of provider "busy" failed: answered with an error
--- timeout: 3



=== TEST 5: the first attempt fails after the hedge started: the hedge's
connection goes on in its place, its request not sent again
--- request
POST /v1/chat/completions
{"model":"reset-late","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=complete s=200 a=2 p=hedgelate pt=1$/
--- error_log
the hedge on "hedgelate" goes on in its place
--- timeout: 3



=== TEST 6: the client leaves during the race: both connections closed,
nothing left behind
--- request
POST /v1/chat/completions
{"model":"soon-slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- abort
--- timeout: 0.5
--- ignore_response
--- wait: 1
--- error_log eval
[qr/hedged on "slow"/,
 qr/the hedge on "slow" of provider "slow" closed after \d+ ms/]
--- access_log eval
qr/^o=client_gone s=499 a=2 p=soon pt=\d+$/



=== TEST 7: without aigw_hedge nothing changes: the late first token is
waited for
--- request
POST /nohedge/v1/chat/completions
{"model":"soon-slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=1 p=soon pt=1$/
--- no_error_log
hedged on
[error]



=== TEST 8: the hedge's connection, handed to upstream, carries its
request once, and is kept alive clean for the next request
--- request eval
["GET /_mock/reset",
 qq'POST /v1/chat/completions\n{"model":"slow-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}',
 qq'POST /v1/chat/completions\n{"model":"fast","messages":[{"role":"user","content":"again"}]}',
 "GET /_mock/stats"]
--- response_body_like eval
[qr//, qr/data: \[DONE\]\n\n$/, qr/Mock answer to: again/,
 qr/"requests": 3,\s+"connections": 2\b/]
--- timeout: 3



=== TEST 9: the first attempt failed while the hedge ran: the provider
of the hedge had one request, not two
--- request eval
["GET /_mock/reset",
 qq'POST /v1/chat/completions\n{"model":"reset-late","stream":true,"messages":[{"role":"user","content":"hi"}]}',
 "GET /_mock/stats"]
--- response_body_like eval
[qr//, qr/data: \[DONE\]\n\n$/, qr/"requests": 2,/]
--- timeout: 3



=== TEST 10: the deadline passes during the race: both ended, a 504,
the hedge's timer and connection gone
--- request
POST /deadline/v1/chat/completions
{"model":"slow-slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 504
--- response_body_like: "code":"upstream_timeout"
--- access_log eval
qr/^o=timeout s=504 a=2 p=slow pt=\d+$/
--- error_log eval
[qr/hedged on "slow2" of provider "slow2"/,
 qr/ran out of its 900 ms deadline after 2 attempt/,
 qr/the hedge on "slow2" of provider "slow2" closed after \d+ ms/]
--- timeout: 3



=== TEST 11: keep-alive comments went out (the status committed): the
hedge still serves, after them, in the same stream
--- request
POST /ka/v1/chat/completions
{"model":"slow-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^: keep-alive\n\n(?:: keep-alive\n\n)*data: \{"id":"chatcmpl-[^\n]*"role":"assistant"(?s:(?!"role").)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=hedged s=200 a=2 p=ok pt=3$/
--- error_log
had its first token first
--- timeout: 3



=== TEST 12: without aigw_first_token_timeout: the first attempt's early
events are held all the same, and the hedge's first token serves
--- request
POST /noft/v1/chat/completions
{"model":"slow-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=hedged s=200 a=2 p=ok pt=3$/
--- error_log
the hedge on "fast" had its first token first
--- timeout: 2



=== TEST 13: without aigw_first_token_timeout: the first attempt's first
token closes the hedge then, not at the end of the stream
--- request
POST /noft/v1/chat/completions
{"model":"soon-slow","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=complete s=200 a=2 p=soon pt=3$/
--- error_log eval
qr/the hedge on "slow" of provider "slow" closed after [0-9]{3} ms/
--- timeout: 2



=== TEST 14: the hedge cannot connect: it is no attempt, the first goes
on and serves
--- request
POST /v1/chat/completions
{"model":"soon-refused","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete s=200 a=1 p=soon pt=1$/
--- error_log eval
qr/the hedge on "refused" of provider "refused" failed: (could not connect|could not send the request)/
--- timeout: 2



=== TEST 15: the metrics count the stream the hedge served, and the
first attempt it left as a fallback
--- request eval
["POST /v1/chat/completions
{\"model\":\"slow-fast\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /metrics"]
--- response_body_like eval
[qr/data: \[DONE\]\n\n$/,
qr/\A(?=(?s:.)*^aigw_stream_hedges_total\{[^}]*\} 1$)(?=(?s:.)*^aigw_fallbacks_total\{[^}]*\} 1$)/m]
--- timeout: 4



=== TEST 16: the hedge has its first token after
aigw_next_upstream_timeout: it is served all the same (no new attempt
is started, the hedge's answer is under way)
--- request
POST /nut/v1/chat/completions
{"model":"slow-soon","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=hedged s=200 a=2 p=soon pt=3$/
--- error_log eval
[qr/hedged on "soon" of provider "soon"/,
 qr/the hedge on "soon" had its first token first, after (?:[5-9]\d\d|\d{4,}) ms/]
--- timeout: 3



=== TEST 17: the first attempt fails after aigw_next_upstream_timeout
while the hedge runs: the hedge, whose request is out already, goes on
in its place
--- request
POST /nut/v1/chat/completions
{"model":"reset-late","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=complete s=200 a=2 p=hedgelate pt=1$/
--- error_log
the hedge on "hedgelate" goes on in its place
--- timeout: 3



=== TEST 18: the first attempt answers 503 after
aigw_next_upstream_timeout while the hedge runs: the hedge goes on in
its place, the 503 is not the answer
--- request
POST /nut/v1/chat/completions
{"model":"busylate-late","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=complete s=200 a=2 p=hedgelate pt=1$/
--- error_log
the hedge on "hedgelate" goes on in its place
--- timeout: 3



=== TEST 19: the hedge that won is cut: without
aigw_next_upstream_timeout the stream is resumed on the next model
--- request
POST /resume/v1/chat/completions
{"model":"slow-sooncut-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=resumed s=200 a=3 p=ok /
--- error_log
had its first token first
resumed on the next model
--- timeout: 4



=== TEST 20: the same after aigw_next_upstream_timeout: the hedge was
served, but the resume is a new attempt, which the timeout still stops
--- request
POST /nutr/v1/chat/completions
{"model":"slow-sooncut-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:(?!\[DONE\]).)*"code":"stream_cut"/
--- access_log eval
qr/^o=(?!resumed)\w+ s=200 a=2 p=sooncut /
--- error_log
had its first token first
--- timeout: 4



=== TEST 21: the loser is priced at its own model's prices: the first
attempt's model ($1 a token) left with its 2 estimated prompt tokens,
the hedge's model free
--- request
POST /cost/v1/chat/completions
{"model":"priced-fast","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval: $::OneStream
--- access_log eval
qr/^o=hedged pt=3 cost=2\.000000$/
--- timeout: 2



=== TEST 22: and the hedge that lost, priced ($1 a token), when the
first attempt's free model served
--- request
POST /cost/v1/chat/completions
{"model":"soon-priced","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-(?s:.)*data: \[DONE\]\n\n$/
--- access_log eval
qr/^o=complete pt=3 cost=2\.000000$/
--- timeout: 3

