# Fallback: on connect errors, timeouts, 5xx and 429 the next candidate of
# the route is tried, with the request rebuilt for it; other 4xx go back.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
$ENV{AIGW_TEST_ANTHROPIC_KEY} = 'sk-ant-provider-secret';
env_to_nginx('AIGW_TEST_KEY', 'AIGW_TEST_ANTHROPIC_KEY');

# a port nothing listens on: connect() is refused at once
$ENV{TEST_NGINX_DEAD_PORT} = 1;

our $HttpConfig = <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s503 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=503/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s500 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=500/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s502 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=502/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s429 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=429/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s400 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=400/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider s401 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=401/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider hang http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/hang/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider reset http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/reset/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider garbage http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/garbage/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider dead http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_ANTHROPIC_KEY;
    aigw_provider s520 http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=520/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model good ok:gpt-4o-good;
    aigw_model m503 s503:gpt-4o-503;
    aigw_model m500 s500:gpt-4o-500;
    aigw_model m502 s502:gpt-4o-502;
    aigw_model m429 s429:gpt-4o-429;
    aigw_model m400 s400:gpt-4o-400;
    aigw_model m401 s401:gpt-4o-401;
    aigw_model mhang hang:gpt-4o-hang;
    aigw_model mreset reset:gpt-4o-reset;
    aigw_model mgarbage garbage:gpt-4o-garbage;
    aigw_model mdead dead:gpt-4o-dead;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_model m520 s520:gpt-4o-520;

    aigw_route r503 m503 good;
    aigw_route r500 m500 good;
    aigw_route r502 m502 good;
    aigw_route r429 m429 good;
    aigw_route r400 m400 good;
    aigw_route r401 m401 good;
    aigw_route rhang mhang good;
    aigw_route rreset mreset good;
    aigw_route rgarbage mgarbage good;
    aigw_route rdead mdead good;
    aigw_route chain m503 mdead m429 good;
    aigw_route allbad m503 mdead;
    aigw_route allhang mhang mhang;
    aigw_route last503 mdead m503;
    aigw_route mixed haiku good;
    aigw_route onlyclaude haiku;
    aigw_route r520 m520 good;
    aigw_route last520 mdead m520;
_EOC_

our $Config = <<'_EOC_';
    aigw_read_timeout 500ms;
    location /v1/ {
        aigw_pass;
        add_header X-Provider $aigw_provider always;
        add_header X-Model $aigw_model always;
        add_header X-Attempts $aigw_attempts always;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: 503 falls back to the next candidate
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r503","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Model: good
X-Attempts: 2
--- response_body_like: "model":"gpt-4o-good"
--- error_log
aigw: provider "s503" failed for "m503", falling back to "good" of provider "ok"



=== TEST 2: 500 falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r500","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer



=== TEST 3: 502 falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r502","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer



=== TEST 4: 429 falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r429","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer



=== TEST 5: a refused connection falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rdead","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer
--- error_log
connect() failed (111: Connection refused)



=== TEST 6: a provider that never answers times out and falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rhang","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer
--- error_log
upstream timed out



=== TEST 7: a reset connection falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rreset","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer



=== TEST 8: garbage instead of HTTP falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rgarbage","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: Mock answer
--- error_log
aigw: provider "garbage" sent no valid HTTP status line



=== TEST 9: 400 from a provider goes straight back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r400","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_headers
X-Provider: s400
X-Attempts: 1
--- response_body_like: ^\{"error":\{"message":"[^"]*","type":"invalid_request_error"
--- no_error_log
falling back



=== TEST 10: 401 from a provider goes straight back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r401","messages":[{"role":"user","content":"hi"}]}
--- error_code: 401
--- response_headers
X-Attempts: 1
--- no_error_log
falling back



=== TEST 11: a long chain: 503, refused, 429, then an answer
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"chain","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Model: good
X-Attempts: 4
--- response_body_like: "model":"gpt-4o-good"



=== TEST 12: every candidate fails: 502 in OpenAI's error shape
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"allbad","messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_headers
Content-Type: application/json
X-Attempts: 2
--- response_body chomp
{"error":{"message":"No provider of `allbad` could answer (2 attempt(s)).","type":"server_error","param":null,"code":"upstream_error"}}
--- error_log
aigw: "allbad" failed after 2 attempt(s)



=== TEST 13: every candidate times out: 504
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"allhang","messages":[{"role":"user","content":"hi"}]}
--- error_code: 504
--- response_headers
Content-Type: application/json
--- response_body chomp
{"error":{"message":"The providers of `allhang` did not answer in time (2 attempt(s)).","type":"server_error","param":null,"code":"upstream_timeout"}}
--- timeout: 5



=== TEST 14: the last candidate's own 503 reaches the client
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"last503","messages":[{"role":"user","content":"hi"}]}
--- error_code: 503
--- response_headers
X-Provider: s503
X-Attempts: 2
--- response_body_like: ^\{"error":\{"message":".*","type":"(server_error|service_unavailable)"



=== TEST 15: the request is rebuilt for each candidate
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"r503\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- response_body_like eval
[
qr/Mock answer/,
qr/(?s)^(?=.*"path": "\/v1\/chat\/completions")(?=.*\\"model\\":\\"gpt-4o-good\\")(?!.*gpt-4o-503)/
]



=== TEST 16: candidates of another wire format are left out
Where the request is not translated: a text completion, OpenAI's only
(t/097-translate.t has the chat completions Anthropic serves).
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/completions
{"model":"mixed","prompt":"hi"}
--- response_headers
X-Provider: ok
X-Attempts: 1



=== TEST 17: no candidate for the endpoint: 400
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/completions
{"model":"onlyclaude","prompt":"hi"}
--- error_code: 400
--- response_body chomp
{"error":{"message":"The model `onlyclaude` is not available on this endpoint.","type":"invalid_request_error","param":null,"code":"model_not_supported"}}



=== TEST 18: a stream falls back before its first byte
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r503","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_headers
Content-Type: text/event-stream; charset=utf-8
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^data: \{.*"model":"gpt-4o-good".*data: \[DONE\]\n\n$



=== TEST 19: an Anthropic client gets Anthropic's error shape
--- http_config
    aigw_provider dead http://127.0.0.1:$TEST_NGINX_DEAD_PORT/v1
                  format=anthropic key_env=AIGW_TEST_ANTHROPIC_KEY;
    aigw_model haiku dead:claude-3-5-haiku;
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"haiku","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_body chomp
{"type":"error","error":{"type":"api_error","message":"No provider of `haiku` could answer (1 attempt(s))."}}



=== TEST 20: any other 5xx falls back too
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"r520","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: "model":"gpt-4o-good"
--- error_log
aigw: provider "s520" answered 520



=== TEST 21: the last candidate's own 520 reaches the client
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"last520","messages":[{"role":"user","content":"hi"}]}
--- error_code: 520
--- response_headers
X-Provider: s520
X-Attempts: 2
