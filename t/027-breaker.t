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
--- response_body_like: ^\{"providers":\[\{"name":"ok","state":"closed","failures":0,"retry_in_ms":0,"opened":0,"skipped":0,"latency_ms":\d+\},\{"name":"bad","state":"open","failures":0,"retry_in_ms":\d+,"opened":1,"skipped":2,"latency_ms":\d+\},
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
--- response_body_like: \{"name":"bad","state":"closed","failures":0,"retry_in_ms":0,"opened":1,"skipped":2,"latency_ms":\d+\}



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
[qr/\{"name":"busy","state":"open","failures":0,"retry_in_ms":(?:2[5-9]|30)\d{3},"opened":1,"skipped":1,"latency_ms":\d+\}/,
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



=== TEST 10b: a zone too small, as every zone is told
--- http_config
    aigw_breaker zone=b:1k;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model good ok:gpt-4o-mini;
--- config
--- must_die
--- error_log
invalid zone size "b:1k"



=== TEST 11: balance=latency: the provider with the lowest recent time to
first byte first, one not measured yet before all
"slow" (300 ms) is measured by the first request, "fast" by the second;
from then on "fast" comes first.
--- http_config
    aigw_breaker zone=breakers:64k;
    aigw_provider slow http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/delay=300/v1;
    aigw_provider fast http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model s slow:gpt-4o-mini;
    aigw_model f fast:gpt-4o-mini;
    aigw_route lat s f balance=latency;
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"lat\",\"messages\":[{\"role\":\"user\",\"content\":\"1\"}]}",
"POST /v1/chat/completions
{\"model\":\"lat\",\"messages\":[{\"role\":\"user\",\"content\":\"2\"}]}",
"POST /v1/chat/completions
{\"model\":\"lat\",\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}",
"POST /v1/chat/completions
{\"model\":\"lat\",\"messages\":[{\"role\":\"user\",\"content\":\"4\"}]}",
"GET /breakers"
]
--- response_headers eval
["X-Provider: slow", "X-Provider: fast", "X-Provider: fast",
 "X-Provider: fast", ""]
--- response_body_like eval
[qr/Mock answer/, qr/Mock answer/, qr/Mock answer/, qr/Mock answer/,
 qr/\{"name":"slow",.*"latency_ms":(?:[3-9]\d\d|\d{4,})\},\{"name":"fast",.*"latency_ms":\d+\}/]



=== TEST 12: balance=weight: the first candidate at random by weight
Twenty requests with weights 1 and 1: both providers are measured (all
twenty on one: a chance of one in half a million).
--- http_config
    aigw_breaker zone=breakers:64k;
    aigw_provider a http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_provider b http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model ma a:gpt-4o-mini;
    aigw_model mb b:gpt-4o-mini;
    aigw_route w ma weight=1 mb weight=1 balance=weight;
--- config eval: $::Config
--- request eval
[ (map { "POST /v1/chat/completions
{\"model\":\"w\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 20),
  "GET /breakers" ]
--- response_body_like eval
[ (map { qr/Mock answer/ } 1 .. 20),
  qr/^\{"providers":\[\{"name":"a",.*"latency_ms":[1-9]\d*\},\{"name":"b",.*"latency_ms":[1-9]\d*\}\]\}$/ ]



=== TEST 13: balance=latency needs the shared zone
--- http_config
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model good ok:gpt-4o-mini;
    aigw_route r good balance=latency;
--- config
--- must_die
--- error_log
"balance=latency" needs the shared zone of "aigw_breaker", defined before the route



=== TEST 14: a weight is of the model before it
--- http_config
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model good ok:gpt-4o-mini;
    aigw_route r weight=2 good;
--- config
--- must_die
--- error_log
invalid parameter "weight=2"
