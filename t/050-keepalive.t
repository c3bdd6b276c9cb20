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




=== TEST 4: a kept-alive connection to "a" (for the next two tests)
--- http_config
    log_format att 'a=$aigw_attempts p=$aigw_provider';
    aigw_provider a http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider b http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model ma a:gpt-4o;
    aigw_model mb b:gpt-4o;
    aigw_route r ma mb;
--- config
    location /v1/ {
        access_log logs/access.log att;
        aigw_pass;
    }
    location /_mock/ {
        access_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"GET /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}"
]
--- response_body_like eval
[qr//, qr/Mock answer to: one/]



=== TEST 5: a reused connection that fails at once, as the request is
sent, was closed while idle: the request goes again on a new connection
to the same provider, and that is not a second attempt
--- request
POST /v1/chat/completions
{"model":"r","messages":[{"role":"user","content":"three"}]}
--- more_headers
x-mock: reset,times=1
--- response_body_like: Mock answer to: three
--- access_log eval
qr/^a=1 p=a$/
--- error_log
failed as the request was sent, which goes again on a new one
--- no_error_log
falling back



=== TEST 6: a request that waited on a reused connection and then failed
is not sent again to the same provider: the next candidate gets it, and
every copy sent is an attempt
It waits 2 s on the connection to "a" and is reset ("times=1": once).
--- request
POST /v1/chat/completions
{"model":"r","messages":[{"role":"user","content":"two"}]}
--- more_headers
x-mock: delay=2000,reset,times=1
--- response_body_like: Mock answer to: two
--- access_log eval
qr/^a=2 p=b$/
--- error_log
aigw: provider "a" failed for "ma", falling back to "mb" of provider "b"
--- timeout: 6



=== TEST 7: five copies sent, each an attempt or a
resend of one that never reached the provider: one, three (reset at
once, resent), two (to "a", waited and reset; to "b")
--- request
GET /_mock/stats
--- response_body_like: "requests": 5,\s+"connections": 3\b
