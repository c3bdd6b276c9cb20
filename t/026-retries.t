# Retries of the same candidate (aigw_retries): on which failures, after a
# backoff on a timer (never blocking the worker), or after the wait a 429
# asks for when it is short; a long one moves on; within the deadline.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    log_format retries 'a=$aigw_attempts p=$aigw_provider s=$status';

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider twice http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=503,times=2/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider thrice http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=502,times=3/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider short http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=429,retry_after=1,times=1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider long http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=429,retry_after=30/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider dead http://127.0.0.1:1/v1 key_env=AIGW_TEST_KEY;
    aigw_provider slowfail http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=500/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model good ok:gpt-4o-mini;
    aigw_model twice twice:gpt-4o-mini;
    aigw_model thrice thrice:gpt-4o-mini;
    aigw_model short short:gpt-4o-mini;
    aigw_model long long:gpt-4o-mini;
    aigw_model dead dead:gpt-4o-mini;
    aigw_model slowfail slowfail:gpt-4o-mini;

    aigw_provider small http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/context=8192/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider csmall http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/context=8192/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model small small:gpt-4o-mini;
    aigw_model big ok:gpt-4.1;
    aigw_model csmall csmall:claude-3-5-haiku;
    aigw_model cbig claude:claude-sonnet-4;
    aigw_route ctx small big on=context_length_exceeded;
    aigw_route cctx csmall cbig on=context_length_exceeded;
    aigw_route noctx small big;

    aigw_route thrice-then-good thrice good;
    aigw_route long-then-good long good;
    aigw_route dead-then-good dead good;
_EOC_

our $Config = <<'_EOC_';
    access_log logs/access.log retries;

    location /v1/ {
        aigw_retries 2 backoff=50ms;
        aigw_pass;
    }
    location /invalid/v1/ {
        aigw_retries 2 on=invalid backoff=50ms;
        aigw_pass;
    }
    location /only5xx/v1/ {
        aigw_retries 2 on=5xx backoff=50ms;
        aigw_pass;
    }
    location /deadline/v1/ {
        aigw_timeout 1s;
        aigw_retries 2 backoff=2s;
        aigw_pass;
    }
    location /_mock/ {
        access_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the mock's counts start afresh
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /_mock/reset



=== TEST 2: two 503s, then an answer: the same provider, three attempts
--- request
POST /v1/chat/completions
{"model":"twice","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=3 p=twice s=200
--- error_log eval
[qr/aigw: provider "twice" failed for "twice" \(5xx\), retry 1 of 2 in \d+ ms/,
 qr/aigw: provider "twice" failed for "twice" \(5xx\), retry 2 of 2 in \d+ ms/]



=== TEST 3: retries used up: the route moves on
--- request
POST /v1/chat/completions
{"model":"thrice-then-good","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=4 p=ok s=200
--- error_log
retry 2 of 2 in
aigw: provider "thrice" failed for "thrice", falling back to "good" of provider "ok"



=== TEST 4: a 429 asking for 1 s, within retry_after_max: retried after it
--- request
POST /v1/chat/completions
{"model":"short","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=2 p=short s=200
--- error_log
aigw: provider "short" failed for "short" (429), retry 1 of 2 in 1000 ms
--- timeout: 5



=== TEST 5: a 429 asking for 30 s, longer: not retried, the route moves on
--- request
POST /v1/chat/completions
{"model":"long-then-good","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=2 p=ok s=200
--- no_error_log
aigw: provider "long" failed for "long" (429), retry



=== TEST 6: on=5xx: a refused connection is not retried
--- request
POST /only5xx/v1/chat/completions
{"model":"dead-then-good","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=2 p=ok s=200
--- no_error_log
aigw: provider "dead" failed for "dead" (connection), retry



=== TEST 7: by default, a refused connection is
--- request
POST /v1/chat/completions
{"model":"dead-then-good","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer to: hi
--- access_log
a=4 p=ok s=200
--- error_log
aigw: provider "dead" failed for "dead" (connection), retry 2 of 2 in



=== TEST 8: no retry past the deadline: the provider's 500 goes back
--- request
POST /deadline/v1/chat/completions
{"model":"slowfail","messages":[{"role":"user","content":"hi"}]}
--- error_code: 500
--- access_log
a=1 p=slowfail s=500
--- no_error_log
aigw: provider "slowfail" failed for "slowfail" (5xx), retry



=== TEST 9: on=context_length_exceeded: a prompt too long for the small
model goes to the big one, and never again to the small one (retries of
invalid answers or not)
--- request
POST /invalid/v1/chat/completions
{"model":"ctx","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: "model":"gpt-4.1".*Mock answer to: hi
--- access_log
a=2 p=ok s=200
--- error_log
aigw: the prompt is too long for "small", sent to "big"
--- no_error_log
aigw: provider "small" failed for "small" (invalid answer), retry



=== TEST 10: Anthropic's "prompt is too long" likewise
--- request
POST /v1/messages
{"model":"cctx","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like: "model":"claude-sonnet-4"
--- access_log
a=2 p=claude s=200
--- error_log
aigw: the prompt is too long for "csmall", sent to "cbig"



=== TEST 11: without it, the 400 goes back to the client as it is
--- request
POST /v1/chat/completions
{"model":"noctx","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "code":"context_length_exceeded"
--- access_log
a=1 p=small s=400
