# aigw_pass: requests reach the provider rewritten for it, answers come back
# unchanged.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
$ENV{AIGW_TEST_ANTHROPIC_KEY} = 'sk-ant-provider-secret';
env_to_nginx('AIGW_TEST_KEY', 'AIGW_TEST_ANTHROPIC_KEY');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a chat completion passes through
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=openai key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o-mini mock:gpt-4o-mini-2024-07-18;
--- config
    location /v1/ {
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
Content-Type: application/json
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"id":"chatcmpl-[^"]+","object":"chat\.completion",.*"model":"gpt-4o-mini-2024-07-18".*"content":"Mock answer to: hello there".*"usage":\{"prompt_tokens":\d+
--- no_error_log
[error]
[warn]



=== TEST 2: the provider gets its own key, the upstream model, no client secret
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=openai key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o-mini mock:gpt-4o-mini-2024-07-18;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- more_headers eval
[
"Authorization: Bearer client-secret-1
X-Api-Key: client-secret-2
Cookie: session=client-secret-3
Accept-Encoding: gzip
Connection: close, X-Hop
X-Hop: client-secret-4
OpenAI-Organization: org-client
X-Custom-Trace: trace-42
User-Agent: OpenAI/JS 4.0.0",
""
]
--- response_body_like eval
[
qr/Mock answer to: hi/,
qr/(?s)^(?=.*"path": "\/v1\/chat\/completions")(?=.*"authorization": "Bearer sk-provider-secret")(?=.*"content-type": "application\/json")(?=.*"x-custom-trace": "trace-42")(?=.*"user-agent": "OpenAI\/JS 4\.0\.0")(?=.*\\"model\\":\\"gpt-4o-mini-2024-07-18\\")(?!.*client-secret)(?!.*"cookie")(?!.*"accept-encoding")(?!.*"x-hop")(?!.*"openai-organization")(?!.*"x-api-key")/
]
--- no_error_log
[error]



=== TEST 3: the body keeps every byte but the model's name
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=openai key_env=AIGW_TEST_KEY;
    aigw_model fast mock:gpt-4o-mini;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"fast\",\"temperature\":0.25,\"max_tokens\":7,\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \\u00e9 \\\"q\\\"\"}],\"tools\":[],\"x\":{\"y\":[1,2,null,true]}}",
"GET /_mock/last"
]
--- response_body_like eval
[
qr/"model":"gpt-4o-mini"/,
qr/"body": "\{\\"model\\":\\"gpt-4o-mini\\",\\"temperature\\":0\.25,\\"max_tokens\\":7,\\"messages\\":\[\{\\"role\\":\\"user\\",\\"content\\":\\"caf\xc3\xa9 \\\\u00e9 \\\\\\"q\\\\\\"\\"\}\],\\"tools\\":\[\],\\"x\\":\{\\"y\\":\[1,2,null,true\]\}\}"/
]
--- no_error_log
[error]



=== TEST 4: a base URL with a path prefix
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/openai/v1/
                  key_env=AIGW_TEST_KEY;
    aigw_model m mock:gpt-4o;
--- config
    location /api/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /api/v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- response_body_like eval
[
qr/Mock answer/,
qr/"path": "\/openai\/v1\/chat\/completions"(?s:.*)"host": "127\.0\.0\.1:\d+"/
]



=== TEST 5: an Anthropic provider gets x-api-key and anthropic-version
--- http_config
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_ANTHROPIC_KEY;
    aigw_model haiku claude:claude-3-5-haiku-20241022;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
"GET /_mock/last"
]
--- more_headers eval
[
"x-api-key: client-secret-1
anthropic-beta: tools-2024-05-16",
""
]
--- response_body_like eval
[
qr/^\{"id":"msg_[^"]+","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022"/,
qr/(?s)^(?=.*"path": "\/v1\/messages")(?=.*"x-api-key": "sk-ant-provider-secret")(?=.*"anthropic-version": "2023-06-01")(?=.*"anthropic-beta": "tools-2024-05-16")(?!.*client-secret)(?!.*"authorization")/
]
--- no_error_log
[error]



=== TEST 6: the client's anthropic-version is kept
--- http_config
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_ANTHROPIC_KEY;
    aigw_model haiku claude:claude-3-5-haiku-20241022;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
"GET /_mock/last"
]
--- more_headers eval
["anthropic-version: 2024-01-01", ""]
--- response_body_like eval
[
qr/"type":"message"/,
qr/(?s)"anthropic-version": "2024-01-01"(?!.*anthropic-version)/
]



=== TEST 7: embeddings and text completions
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model embed mock:text-embedding-3-small;
    aigw_model instruct mock:gpt-3.5-turbo-instruct;
--- config
    location /v1/ {
        aigw_pass;
    }
--- request eval
[
"POST /v1/embeddings
{\"model\":\"embed\",\"input\":\"hello\"}",
"POST /v1/completions
{\"model\":\"instruct\",\"prompt\":\"Say hi\"}"
]
--- response_body_like eval
[
qr/^\{"object":"list","data":\[\{"object":"embedding","index":0,"embedding":\[/,
qr/"object":"text_completion"/
]



=== TEST 8: GET /v1/models lists public models and routes
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o mock:gpt-4o-2024-08-06;
    aigw_model "we\"ird" mock:x;
    aigw_route default gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
--- request
GET /v1/models
--- response_headers
Content-Type: application/json
--- response_body chomp
{"object":"list","data":[{"id":"gpt-4o","object":"model","created":0,"owned_by":"mock"},{"id":"we\"ird","object":"model","created":0,"owned_by":"mock"},{"id":"default","object":"model","created":0,"owned_by":"aigw"}]}



=== TEST 9: variables say what happened
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o mock:gpt-4o-2024-08-06;
    aigw_route default gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
        add_header X-Provider $aigw_provider;
        add_header X-Model $aigw_model;
        add_header X-Upstream-Model $aigw_upstream_model;
        add_header X-Attempts $aigw_attempts;
        add_header X-Route $aigw_route;
        add_header X-Stream $aigw_stream;
    }
--- request
POST /v1/chat/completions
{"model":"default","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: mock
X-Model: gpt-4o
X-Upstream-Model: gpt-4o-2024-08-06
X-Attempts: 1
X-Route: default
X-Stream: 0
--- response_body_like: Mock answer



=== TEST 10: aigw_pass ROUTE takes the route whatever model is asked
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o mock:gpt-4o-2024-08-06;
    aigw_route pinned gpt-4o;
--- config
    location /v1/ {
        aigw_pass pinned;
        add_header X-Route $aigw_route;
    }
--- request
POST /v1/chat/completions
{"model":"anything","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Route: pinned
--- response_body_like: "model":"gpt-4o-2024-08-06"



=== TEST 11: aigw_pass with a variable
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model small mock:gpt-4o-mini;
    aigw_model big mock:gpt-4o;
    map $http_x_tier $aigw_tier_route {
        default  small;
        gold     big;
    }
--- config
    location /v1/ {
        aigw_pass $aigw_tier_route;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
["X-Tier: gold", ""]
--- response_body_like eval
[qr/"model":"gpt-4o"/, qr/"model":"gpt-4o-mini"/]



=== TEST 12: a provider without credentials sends none
--- http_config
    aigw_provider local http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    aigw_model llama local:llama-3.1-8b;
--- config
    location /v1/ {
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"llama\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- more_headers eval
["Authorization: Bearer client-secret", ""]
--- response_body_like eval
[qr/Mock answer/, qr/^(?s)(?!.*authorization)(?!.*client-secret).*"path"/]



=== TEST 13: a chunked answer from the provider
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m mock:gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"chunked please"}]}
--- response_body_like: ^\{"id":"chatcmpl-.*"content":"Mock answer to: chunked please".*\}$
--- no_error_log
[error]



=== TEST 14: a body larger than client_body_buffer_size
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m mock:gpt-4o;
--- config
    client_body_buffer_size 1k;
    location /v1/ {
        aigw_pass;
    }
--- request eval
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"big " . ("x" x 20000) . "\"}]}"
--- response_body_like: "content":"Mock answer to: big xxx
--- no_error_log
[error]



=== TEST 15: GET /v1/models/{id}: one model or route, or 404
--- http_config
    aigw_provider mock http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o mock:gpt-4o-2024-08-06;
    aigw_route default gpt-4o;
--- config
    location /v1/ {
        aigw_pass;
    }
--- request eval
["GET /v1/models/gpt-4o", "GET /v1/models/default", "GET /v1/models/nope"]
--- error_code eval
[200, 200, 404]
--- response_body eval
[
qq'{"id":"gpt-4o","object":"model","created":0,"owned_by":"mock"}',
qq'{"id":"default","object":"model","created":0,"owned_by":"aigw"}',
qq'{"error":{"message":"The model `nope` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}'
]
