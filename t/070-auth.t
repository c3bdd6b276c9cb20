# Virtual keys: every request of an aigw_pass location is authenticated in
# the access phase, before anything reaches a provider.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use JSON::PP ();

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

my $dir = tempdir(CLEANUP => 1);

my @keys = (
    { id => 'key_good', secret => 'sk-aigw-test-good', tenant => 'acme',
      user => 'alice', team => 'research',
      metadata => { cost_center => 'cc-42', Env => 'prod' } },
    { id => 'key_limited', secret => 'sk-aigw-test-limited',
      tenant => 'acme', models => ['gpt-4o-mini*', 'embed'] },
    { id => 'key_disabled', secret => 'sk-aigw-test-disabled',
      tenant => 'acme', disabled => JSON::PP::true },
    { id => 'key_expired', secret => 'sk-aigw-test-expired',
      tenant => 'acme', expires_at => '2020-01-01T00:00:00Z' },
    { id => 'key_future', secret => 'sk-aigw-test-future',
      tenant => 'globex', expires_at => '2099-12-31T23:59:59Z' },
    { id => 'key_epoch', secret => 'sk-aigw-test-epoch',
      tenant => 'globex', expires_at => 1000 },
    { id => 'key_half', secret => 'sk-aigw-test-half',
      tenant => 'globex', expires_at => 0.5 },
    { id => 'key_1970', secret => 'sk-aigw-test-1970',
      tenant => 'globex', expires_at => '1970-01-01T00:00:00Z' },
    { id => 'key_utf8', secret => "sk-aigw-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
      tenant => 'initech' },
);

for my $k (@keys) {
    $k->{hash} = sha256_hex(delete $k->{secret});
}

open my $fh, '>', "$dir/keys.json" or die;
print $fh JSON::PP->new->encode({ keys => \@keys });
close $fh;

$ENV{TEST_NGINX_KEYS} = "$dir/keys.json";

our $HttpConfig = <<'_EOC_';
    aigw_keys $TEST_NGINX_KEYS;
    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model gpt-4o-mini ok:gpt-4o-mini;
    aigw_model embed ok:text-embedding-3-small;
    aigw_model haiku claude:claude-3-5-haiku;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        aigw_pass;
        add_header X-Key-Id $aigw_key_id always;
        add_header X-Tenant $aigw_tenant always;
        add_header X-User $aigw_user always;
        add_header X-Team $aigw_team always;
        add_header X-Cost-Center $aigw_meta_cost_center always;
        add_header X-Env $aigw_meta_env always;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: no key: 401
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- error_code: 401
--- response_body chomp
{"error":{"message":"You didn't provide an API key. Send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\".","type":"invalid_request_error","param":null,"code":"missing_api_key"}}
--- error_log
aigw: no API key



=== TEST 2: a valid key by Bearer, and the tenant context in variables
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-good
--- response_headers
X-Key-Id: key_good
X-Tenant: acme
X-User: alice
X-Team: research
X-Cost-Center: cc-42
X-Env: prod
--- response_body_like: Mock answer to: hi



=== TEST 3: a valid key by x-api-key
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
x-api-key: sk-aigw-test-good
--- response_headers
X-Key-Id: key_good
--- response_body_like: Mock answer



=== TEST 4: an unknown key, and one that differs in one character: 401
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
[
"Authorization: Bearer sk-nope",
"Authorization: Bearer sk-aigw-test-gooD",
"Authorization: Bearer sk-aigw-test-good "
]
--- error_code eval
[401, 401, 200]
--- response_body_like eval
[
qr/^\{"error":\{"message":"Incorrect API key provided\.","type":"invalid_request_error","param":null,"code":"invalid_api_key"\}\}$/,
qr/"code":"invalid_api_key"/,
qr/Mock answer/
]
--- no_error_log eval
qr/\[(?:info|notice|warn|error)\].*sk-(?:nope|aigw-test)/



=== TEST 5: Authorization that is not Bearer: 401
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
["Authorization: sk-aigw-test-good", "Authorization: Basic YTpi"]
--- error_code eval
[401, 401]
--- response_body_like eval
[qr/must be \\"Bearer <API key>\\"/, qr/"code":"invalid_api_key"/]



=== TEST 6: a disabled key, an expired key: 403; a key that expires later
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
[
"Authorization: Bearer sk-aigw-test-disabled",
"Authorization: Bearer sk-aigw-test-expired",
"Authorization: Bearer sk-aigw-test-epoch",
"Authorization: Bearer sk-aigw-test-future"
]
--- error_code eval
[403, 403, 403, 200]
--- response_body_like eval
[
qr/^\{"error":\{"message":"This API key has been disabled\.","type":"permission_error","param":null,"code":"key_disabled"\}\}$/,
qr/"code":"key_expired"/,
qr/"code":"key_expired"/,
qr/Mock answer/
]



=== TEST 7: a model the key may not use: 403; a glob it may
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}",
"POST /v1/embeddings
{\"model\":\"embed\",\"input\":\"x\"}"
]
--- more_headers eval
[
"Authorization: Bearer sk-aigw-test-limited",
"Authorization: Bearer sk-aigw-test-limited",
"Authorization: Bearer sk-aigw-test-limited"
]
--- error_code eval
[403, 200, 200]
--- response_body_like eval
[
qr/^\{"error":\{"message":"This API key may not use the model `gpt-4o`\.","type":"permission_error","param":null,"code":"model_not_allowed"\}\}$/,
qr/Mock answer to: ok/,
qr/"embedding"/
]



=== TEST 8: Anthropic's error shape on /v1/messages
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":5,\"messages\":[]}",
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":5,\"messages\":[]}",
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
[
"x-api-key: sk-wrong",
"x-api-key: sk-aigw-test-limited",
"x-api-key: sk-aigw-test-good"
]
--- error_code eval
[401, 403, 200]
--- response_body_like eval
[
qr/^\{"type":"error","error":\{"type":"authentication_error","message":"Incorrect API key provided\."\}\}$/,
qr/^\{"type":"error","error":\{"type":"permission_error","message":"This API key may not use the model `haiku`\."\}\}$/,
qr/"type":"message"/
]



=== TEST 9: two different keys: 401; the same key twice is one key
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
[
"Authorization: Bearer sk-aigw-test-good
x-api-key: sk-aigw-test-future",
"Authorization: Bearer sk-aigw-test-good
x-api-key: sk-aigw-test-good",
"x-api-key: sk-aigw-test-good
x-api-key: sk-aigw-test-good"
]
--- error_code eval
[401, 200, 401]
--- response_body_like eval
[qr/more than one API key/, qr/Mock answer/, qr/more than one API key/]



=== TEST 10: two Authorization headers are refused by nginx itself
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-aigw-test-good
Authorization: Bearer sk-aigw-test-future
--- error_code: 400
--- error_log
client sent duplicate header line



=== TEST 11: a huge header
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers eval
"Authorization: Bearer " . ("k" x 20000)
--- error_code: 400
--- error_log
client sent too long header line



=== TEST 12: a key of non-ASCII bytes
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
]
--- more_headers eval
[
"Authorization: Bearer sk-aigw-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
"Authorization: Bearer sk-aigw-\xff\xfe\x01"
]
--- error_code eval
[200, 401]
--- response_headers eval
["X-Tenant: initech", "X-Tenant: "]



=== TEST 13: the client's key never reaches the provider
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- more_headers eval
["Authorization: Bearer sk-aigw-test-good\nx-api-key: sk-aigw-test-good", ""]
--- response_body_like eval
[qr/Mock answer/,
 qr/(?s)^(?=.*"authorization": "Bearer sk-provider-secret")(?!.*sk-aigw-test)/]



=== TEST 14: the tenant to the provider, in a header and in "user"
--- http_config eval: $::HttpConfig
--- config
    location /v1/ {
        aigw_pass;
        aigw_tenant_header X-AIGW-Tenant;
        aigw_tenant_user on;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"user\":\"spoofed\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last",
"POST /v1/messages
{\"model\":\"haiku\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/last"
]
--- more_headers eval
["Authorization: Bearer sk-aigw-test-good\nX-AIGW-Tenant: evil", "",
 "x-api-key: sk-aigw-test-future", ""]
--- response_body_like eval
[qr/Mock answer/,
 qr/(?s)^(?=.*"x-aigw-tenant": "acme")(?=.*\\"user\\":\\"acme\/alice\\")(?!.*evil)(?!.*spoofed)/,
 qr/"type":"message"/,
 qr/(?s)^(?=.*"x-aigw-tenant": "globex")(?=.*\\"metadata\\":\{\\"user_id\\":\\"globex\\"\})/]



=== TEST 15: aigw_auth off: the tenant from a variable
--- http_config eval: $::HttpConfig
--- config
    location /internal/v1/ {
        aigw_auth off;
        aigw_tenant $http_x_internal_team;
        aigw_pass;
        add_header X-Tenant $aigw_tenant always;
        add_header X-Key-Id $aigw_key_id always;
    }
--- request
POST /internal/v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
X-Internal-Team: platform
--- response_headers
X-Tenant: platform
X-Key-Id:
--- response_body_like: Mock answer



=== TEST 16: /v1/models needs a key too
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
["GET /v1/models", "GET /v1/models"]
--- more_headers eval
["", "Authorization: Bearer sk-aigw-test-good"]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/missing_api_key/, qr/"object":"list"/]



=== TEST 17: what is refused is logged, without the secret
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-disabled
--- error_code: 403
--- error_log
aigw: API key "key_disabled" is disabled
--- no_error_log eval
qr/\[(?:info|notice|warn|error)\].*sk-aigw-test/



=== TEST 18: an expired key is logged
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-expired
--- error_code: 403
--- error_log
aigw: API key "key_expired" has expired



=== TEST 19: a model refused to a key is logged
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-limited
--- error_code: 403
--- error_log
aigw: API key "key_limited" may not use "gpt-4o"



=== TEST 20: a malformed Authorization is logged
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Token abc
--- error_code: 401
--- error_log
aigw: "Authorization" is not a bearer token



=== TEST 21: an expiry at the epoch itself is past, not "never" (0.5)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-half
--- error_code: 403
--- error_log
aigw: API key "key_half" has expired



=== TEST 22: an expiry at the epoch itself is past, not "never" (1970)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-aigw-test-1970
--- error_code: 403
--- error_log
aigw: API key "key_1970" has expired



=== TEST 23: a tenant that cannot be a header value is refused
The tenant comes from the URI, decoded: CR and LF in it.
--- http_config eval: $::HttpConfig
--- config
    location ~ ^/t/(?<team>[^/]+)/v1/ {
        aigw_auth off;
        aigw_tenant $team;
        aigw_pass;
    }
--- request
POST /t/a%0D%0AX-Evil:%201/v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body chomp
{"error":{"message":"The tenant of the request is not a valid header value.","type":"invalid_request_error","param":null,"code":"invalid_tenant"}}
--- error_log
aigw: the tenant has a control character at byte 1



=== TEST 24: a tenant with a tab is refused, before any provider
--- http_config eval: $::HttpConfig
--- config
    location ~ ^/t/(?<team>[^/]+)/v1/ {
        aigw_auth off;
        aigw_tenant $team;
        aigw_pass;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
["GET /_mock/reset",
"POST /t/tab%09/v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/stats",
"POST /t/fine/v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- error_code eval
[200, 400, 200, 200]
--- response_body_like eval
[qr/./, qr/invalid_tenant/, qr/"requests": *0/, qr/Mock answer/]



=== TEST 25: the worker's cache of keys: a known key again, keys that differ from it by a byte, a disabled one twice
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- more_headers eval
["Authorization: Bearer sk-aigw-test-good",
"Authorization: Bearer sk-aigw-test-good",
"Authorization: Bearer sk-aigw-test-goot",
"Authorization: Bearer sk-aigw-test-goo",
"Authorization: Bearer sk-aigw-test-good1",
"x-api-key: sk-aigw-test-good",
"Authorization: Bearer sk-aigw-test-disabled",
"Authorization: Bearer sk-aigw-test-disabled"]
--- error_code eval
[200, 200, 401, 401, 401, 200, 403, 403]
--- response_body_like eval
[qr/Mock answer/, qr/Mock answer/, qr/invalid_api_key/, qr/invalid_api_key/,
qr/invalid_api_key/, qr/Mock answer/, qr/key_disabled/, qr/key_disabled/]
--- response_headers eval
["X-Key-Id: key_good", "X-Key-Id: key_good", "X-Key-Id: ", "X-Key-Id: ",
"X-Key-Id: ", "X-Key-Id: key_good", "X-Key-Id: ", "X-Key-Id: "]
