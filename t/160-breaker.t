# Circuit breakers, shared by the workers: a provider that failed N times
# in a window is skipped for a cool-down, then tried by one request; a 429
# that asks for a long wait takes the provider out of rotation for that
# long.  Two workers: whichever gets a request sees the same state.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

workers(2);
master_on();

our $HttpConfig = <<'_EOC_';
    aigw_breaker zone=breakers:64k failures=2 window=10s cooldown=2s
                 retry_after_max=5s;

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider bad http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=503,times=2/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider busy http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/status=429,retry_after=30/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model good ok:gpt-4o-mini;
    aigw_model flaky bad:gpt-4o-mini;
    aigw_model limited busy:gpt-4o-mini;

    aigw_route r flaky good;
    aigw_route l limited good;
    aigw_route only flaky;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        aigw_pass;
        add_header X-Attempts $aigw_attempts always;
        add_header X-Provider $aigw_provider always;
    }
    location = /breakers {
        aigw_breaker_status;
    }
    location = /metrics {
        aigw_metrics;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: two failures open the breaker; the third request skips the
provider, whichever worker gets it
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"1\"}]}",
"POST /v1/chat/completions
{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"2\"}]}",
"POST /v1/chat/completions
{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}",
"POST /v1/chat/completions
{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"4\"}]}",
"GET /_mock/stats"
]
--- response_headers eval
["", "X-Attempts: 2", "X-Attempts: 2", "X-Attempts: 1", "X-Attempts: 1", ""]
--- response_body_like eval
[qr//, qr/Mock answer to: 1/, qr/Mock answer to: 2/, qr/Mock answer to: 3/,
 qr/Mock answer to: 4/, qr/"requests": 6,/]



=== TEST 2: the state, as JSON (then the cool-down passes)
--- request
GET /breakers
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"providers":\[\{"name":"ok","state":"closed","failures":0,"retry_in_ms":0,"opened":0,"skipped":0\},\{"name":"bad","state":"open","failures":0,"retry_in_ms":\d+,"opened":1,"skipped":2\},
--- wait: 2.5



=== TEST 3: after the cool-down, one request tries the provider again (it
has recovered: "times=2"), and its success closes the breaker
--- request
POST /v1/chat/completions
{"model":"r","messages":[{"role":"user","content":"5"}]}
--- response_headers
X-Attempts: 1
X-Provider: bad
--- response_body_like: Mock answer to: 5



=== TEST 4: closed again
--- request
GET /breakers
--- response_body_like: \{"name":"bad","state":"closed","failures":0,"retry_in_ms":0,"opened":1,"skipped":2\}



=== TEST 5: a route whose every provider is out of rotation fails at once
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"only\",\"messages\":[{\"role\":\"user\",\"content\":\"1\"}]}",
"POST /v1/chat/completions
{\"model\":\"only\",\"messages\":[{\"role\":\"user\",\"content\":\"2\"}]}",
"POST /v1/chat/completions
{\"model\":\"only\",\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}"
]
--- error_code eval
[200, 503, 503, 502]
--- response_body_like eval
[qr//, qr/"code"/, qr/"code"/,
 qr/^\{"error":\{"message":"Every provider of `only` is out of rotation for now\.","type":"server_error","param":null,"code":"upstream_unavailable"\}\}$/]



=== TEST 6: a 429 asking for 30 s, longer than retry_after_max, takes the
provider out of rotation for that long at once
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"l","messages":[{"role":"user","content":"1"}]}
--- response_headers
X-Attempts: 2
--- response_body_like: Mock answer to: 1
--- error_log
aigw: provider "busy" is out of rotation for 30000 ms (breaker open, as it asked)



=== TEST 7: the next request skips it
--- request
POST /v1/chat/completions
{"model":"l","messages":[{"role":"user","content":"2"}]}
--- response_headers
X-Attempts: 1
--- response_body_like: Mock answer to: 2
--- error_log
aigw: provider "busy" skipped, its breaker is open



=== TEST 8: the state says so, and the metrics
--- request eval
["GET /breakers", "GET /metrics"]
--- response_body_like eval
[qr/\{"name":"busy","state":"open","failures":0,"retry_in_ms":(?:2[5-9]|30)\d{3},"opened":1,"skipped":1\}/,
 qr/^aigw_breaker_state\{provider="busy"\} 1$(?s:.*)^aigw_breaker_opened_total\{provider="busy"\} 1$(?s:.*)^aigw_breaker_skipped_total\{provider="busy"\} 1$/m]



=== TEST 9: a bad parameter is refused by nginx -t
--- http_config
    aigw_breaker zone=b:64k failures=0;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model good ok:gpt-4o-mini;
--- config
--- must_die
--- error_log
invalid parameter "failures=0"



=== TEST 10: a zone is needed
--- http_config
    aigw_breaker failures=3;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model good ok:gpt-4o-mini;
--- config
--- must_die
--- error_log
"aigw_breaker" must have "zone=name:size"
