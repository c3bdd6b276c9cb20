# Connections to providers are kept alive and reused across requests.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: four requests, one provider connection
The mock counts the TCP connections that carried API requests since its
reset; /_mock/ itself is reached through proxy_pass and is not counted.
--- http_config
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m ok:gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/embeddings
{\"model\":\"m\",\"input\":\"three\"}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}",
"GET /_mock/stats"
]
--- response_body_like eval
[
qr//,
qr/Mock answer to: one/,
qr/data: \[DONE\]/,
qr/"embedding"/,
qr/Mock answer to: four/,
qr/"requests": 4,\s+"connections": 1\b/
]
--- no_error_log
[error]



=== TEST 2: aigw_keepalive 0 opens a connection per request
--- http_config
    aigw_keepalive 0;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m ok:gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"GET /_mock/stats"
]
--- response_body_like eval
[qr//, qr/Mock answer/, qr/Mock answer/,
 qr/"requests": 2,\s+"connections": 2\b/]



=== TEST 3: aigw_keepalive_requests caps the requests on one connection
--- http_config
    aigw_keepalive_requests 2;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m ok:gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"1\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"2\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}",
"GET /_mock/stats"
]
--- response_body_like eval
[qr//, qr/Mock answer/, qr/Mock answer/, qr/Mock answer/,
 qr/"requests": 3,\s+"connections": 2\b/]

