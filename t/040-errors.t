# Bad input gets a clear error in the client's wire format, with the right
# status, and a line in the error log.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider garbage http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/garbage/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider badjson http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/badjson/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model trash garbage:gpt-4o;
    aigw_model broken badjson:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        client_max_body_size 2k;
        aigw_pass;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a body that is not JSON
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model": "gpt-4o", "messages": [
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body chomp
{"error":{"message":"The request body is not valid JSON.","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- error_log
aigw: request body is not valid JSON



=== TEST 2: a JSON array
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
[{"model":"gpt-4o"}]
--- error_code: 400
--- response_body chomp
{"error":{"message":"The request body must be a JSON object.","type":"invalid_request_error","param":null,"code":"invalid_request"}}



=== TEST 3: no model
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body chomp
{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":null,"code":"missing_model"}}
--- error_log
aigw: request without "model"



=== TEST 4: a model that is not a string
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":42,"messages":[]}
--- error_code: 400
--- response_body_like: "code":"invalid_type"



=== TEST 5: "stream" that is not a boolean
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":"yes","messages":[]}
--- error_code: 400
--- response_body chomp
{"error":{"message":"\"stream\" must be a boolean.","type":"invalid_request_error","param":null,"code":"invalid_type"}}



=== TEST 6: an unknown model
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-9\"<x>","messages":[]}
--- error_code: 404
--- response_body chomp
{"error":{"message":"The model `gpt-9\"<x>` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}
--- error_log
aigw: unknown model "gpt-9"<x>"



=== TEST 7: an empty body
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
--- error_code: 400
--- response_body_like: "code":"invalid_request"
--- error_log
aigw: request without a body



=== TEST 8: a body over client_max_body_size
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"" . ("a" x 4096) . "\"}]}"
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body chomp
{"error":{"message":"The request body is larger than the gateway accepts.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large body



=== TEST 9: GET on a POST endpoint
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /v1/chat/completions
--- error_code: 405
--- response_body_like: ^\{"error":\{"message":"Use POST for /v1/chat/completions\.","type":"invalid_request_error"



=== TEST 10: an unknown endpoint
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/assistants
{}
--- error_code: 404
--- response_body chomp
{"error":{"message":"Unknown request URL: POST /v1/assistants.","type":"invalid_request_error","param":null,"code":"unknown_url"}}



=== TEST 11: Anthropic clients get Anthropic's shape
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/messages
not json",
"POST /v1/messages
{\"model\":\"nope\",\"max_tokens\":5,\"messages\":[]}",
"POST /v1/messages
{\"max_tokens\":5}"
]
--- error_code eval
[400, 404, 400]
--- response_body eval
[
qq'{"type":"error","error":{"type":"invalid_request_error","message":"The request body is not valid JSON."}}',
qq'{"type":"error","error":{"type":"not_found_error","message":"The model `nope` does not exist or you do not have access to it."}}',
qq'{"type":"error","error":{"type":"invalid_request_error","message":"you must provide a model parameter"}}'
]



=== TEST 12: a provider that sends garbage, with no other candidate
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"trash","messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_body chomp
{"error":{"message":"No provider of `trash` could answer (1 attempt(s)).","type":"server_error","param":null,"code":"upstream_error"}}
--- error_log
aigw: provider "garbage" sent no valid HTTP status line



=== TEST 13: a provider's broken JSON behind a 200 is not passed on
The answer is held and checked (t/045-answer.t); none left: a 502.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"broken","messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_body chomp
{"error":{"message":"No provider of `broken` could answer (1 attempt(s)).","type":"server_error","param":null,"code":"upstream_error"}}
--- error_log
aigw: provider "badjson" answered 200 with a JSON object cut short
--- no_error_log
[alert]
[crit]



=== TEST 14: error bodies carry no secret
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"no-such-model","messages":[]}
--- more_headers
Authorization: Bearer sk-client-secret
--- error_code: 404
--- response_body_unlike: sk-client-secret
--- no_error_log eval
qr/\[(?:info|notice|warn|error|crit)\].*sk-client-secret/



=== TEST 15: embeddings cannot stream
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/embeddings
{"model":"gpt-4o","input":"x","stream":true}
--- error_code: 400
--- response_body_like: "message":"Embeddings cannot be streamed\."



=== TEST 16: models with a wrong method
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/models
{}
--- error_code: 405
--- response_body_like: "code":"method_not_allowed"
