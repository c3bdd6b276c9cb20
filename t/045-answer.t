# Answers checked before the client sees them: a non-stream 200 is held
# until it is whole and is a JSON object; a truncated body, an HTML page
# or text behind a 200 falls back to the next candidate, or is a 502.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

our $HttpConfig = <<'_EOC_';
    log_format meter 'p=$aigw_prompt_tokens c=$aigw_completion_tokens '
                     'src=$aigw_usage_source attempts=$aigw_attempts '
                     'provider=$aigw_provider';

    aigw_provider ok http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider okc http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider html http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/html/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider htmlc
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/html,chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider notjson
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/notjson/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider notjsonc
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/notjson,chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider short http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider shortc
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut,chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider trunc http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/badjson/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider truncc
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/badjson,chunked/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider claude http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider claudehtml
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/html/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider claudeshort
                  http://127.0.0.1:$TEST_NGINX_MOCK_PORT/fault/cut,chunked/v1
                  format=anthropic key_env=AIGW_TEST_KEY;
    aigw_provider raw http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;

    aigw_model good ok:gpt-4o-good;
    aigw_model goodc okc:gpt-4o-good;
    aigw_model mhtml html:gpt-4o;
    aigw_model mhtmlc htmlc:gpt-4o;
    aigw_model mnotjson notjson:gpt-4o;
    aigw_model mnotjsonc notjsonc:gpt-4o;
    aigw_model mshort short:gpt-4o;
    aigw_model mshortc shortc:gpt-4o;
    aigw_model mtrunc trunc:gpt-4o;
    aigw_model mtruncc truncc:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_model hhtml claudehtml:claude-3-5-haiku;
    aigw_model hshort claudeshort:claude-3-5-haiku;
    aigw_model mraw raw:gpt-4o;

    aigw_route rhtml mhtml good;
    aigw_route rhtmlc mhtmlc good;
    aigw_route rnotjson mnotjson good;
    aigw_route rnotjsonc mnotjsonc good;
    aigw_route rshort mshort good;
    aigw_route rshortc mshortc good;
    aigw_route rtrunc mtrunc good;
    aigw_route rtruncc mtruncc good;
    aigw_route rclaude hhtml hshort haiku;
    aigw_route allbad mhtml mshortc mnotjsonc mtrunc;
_EOC_

our $Config = <<'_EOC_';
    location /v1/ {
        access_log logs/access.log meter;
        aigw_pass;
        add_header X-Provider $aigw_provider always;
        add_header X-Attempts $aigw_attempts always;
    }
    location /small/v1/ {
        access_log logs/access.log meter;
        aigw_answer_buffer 4k;
        aigw_pass;
        add_header X-Attempts $aigw_attempts always;
    }
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

no_shuffle();
no_long_string();
run_tests();

__DATA__

=== TEST 1: an HTML page behind a 200 falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rhtml","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
Content-Type: application/json
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "html" answered 200 with a body that is not a JSON object
text/html
aigw: provider "html" failed for "mhtml", falling back to "good"
--- no_error_log
[alert]



=== TEST 2: an HTML page, chunked, falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rhtmlc","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "htmlc" answered 200 with a body that is not a JSON object



=== TEST 3: text that is not JSON, with application/json, falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rnotjson","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "notjson" answered 200 with a body that is not a JSON object



=== TEST 4: text that is not JSON, chunked, falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rnotjsonc","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "notjsonc" answered 200 with a body that is not a JSON object



=== TEST 5: a body shorter than its Content-Length falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rshort","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log eval
[qr/aigw: the answer of provider "short" is incomplete: \d+ of \d+ bytes/,
 'aigw: provider "short" failed for "mshort", falling back to "good"']



=== TEST 6: a chunked body closed before its last chunk falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rshortc","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log eval
qr/aigw: the answer of provider "shortc" is incomplete: \d+ bytes and no last chunk/



=== TEST 7: JSON cut in the middle, with a correct Content-Length, falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rtrunc","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "trunc" answered 200 with a JSON object cut short



=== TEST 8: JSON cut in the middle, chunked, falls back
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"rtruncc","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: ok
X-Attempts: 2
--- response_body_like: ^\{"id":"chatcmpl-.*"model":"gpt-4o-good".*\}$
--- error_log
aigw: provider "truncc" answered 200 with a JSON object cut short



=== TEST 9: each alone: a 502 in OpenAI's shape
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[map { qq'POST /v1/chat/completions\n{"model":"$_","messages":[{"role":"user","content":"hi"}]}' }
 qw(mhtml mhtmlc mnotjson mnotjsonc mshort mshortc mtrunc mtruncc)]
--- error_code eval
[(502) x 8]
--- response_headers eval
[("Content-Type: application/json\nX-Attempts: 1") x 8]
--- response_body eval
[map { qq'{"error":{"message":"No provider of `$_` could answer (1 attempt(s)).","type":"server_error","param":null,"code":"upstream_error"}}' }
 qw(mhtml mhtmlc mnotjson mnotjsonc mshort mshortc mtrunc mtruncc)]



=== TEST 10: all four bad: a 502 after four attempts
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"allbad","messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_headers
X-Attempts: 4
--- response_body chomp
{"error":{"message":"No provider of `allbad` could answer (4 attempt(s)).","type":"server_error","param":null,"code":"upstream_error"}}
--- error_log
aigw: "allbad" failed after 4 attempt(s)



=== TEST 11: Anthropic: an HTML page and a cut body fall back to the third
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/messages
{"model":"rclaude","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: claude
X-Attempts: 3
--- response_body_like: ^\{"id":"msg_.*"type":"message".*"Mock answer to: hi".*\}$
--- access_log
p=1 c=5 src=provider attempts=3 provider=claude



=== TEST 12: Anthropic, none left: a 502 in Anthropic's shape
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[map { qq'POST /v1/messages\n{"model":"$_","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}' }
 qw(hhtml hshort)]
--- error_code eval
[502, 502]
--- response_body eval
[map { qq'{"type":"error","error":{"type":"api_error","message":"No provider of `$_` could answer (1 attempt(s))."}}' }
 qw(hhtml hshort)]



=== TEST 13: a valid answer, Content-Length: byte for byte, and metered
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
my $b = qq'{ "id" : "chatcmpl-raw",\n  "choices":[{"message":{"content":"caf\\u00e9 \\"{[\\\\"}}],\n  "seed":12345678901234567890, "x":1e400,\n  "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46} }\n';
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
. length($b) . "\r\nConnection: close\r\n\r\n$b"
--- response_headers
Content-Length: 199
!Transfer-Encoding
--- response_body eval
qq'{ "id" : "chatcmpl-raw",\n  "choices":[{"message":{"content":"caf\\u00e9 \\"{[\\\\"}}],\n  "seed":12345678901234567890, "x":1e400,\n  "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46} }\n'
--- access_log
p=12 c=34 src=provider attempts=1 provider=raw



=== TEST 14: a valid chunked answer: de-chunked byte for byte, with its length
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
my @p = (qq'{ "id" : "chatcmpl-r', 'aw"',
         qq',\n  "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46} }\n');
["HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
 . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
 sprintf("%x\r\n%s\r\n", length $p[0], $p[0]),
 sprintf("%x;ext=1\r\n%s\r\n", length $p[1], $p[1]),
 sprintf("%X\r\n%s\r\n", length $p[2], $p[2]),
 "0\r\n\r\n"]
--- response_headers
Content-Length: 99
!Transfer-Encoding
--- response_body eval
qq'{ "id" : "chatcmpl-raw",\n  "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46} }\n'
--- access_log
p=12 c=34 src=provider attempts=1 provider=raw



=== TEST 15: a chunked answer from the mock: whole, metered, with a length
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"goodc","messages":[{"role":"user","content":"hello there"}]}
--- response_headers
!Transfer-Encoding
--- response_headers_like
Content-Length: \d+
--- response_body_like: ^\{"id":"chatcmpl-.*"usage":\{"prompt_tokens":3,"completion_tokens":7.*\}$
--- access_log
p=3 c=7 src=provider attempts=1 provider=okc



=== TEST 16: over aigw_answer_buffer with Content-Length: passed on as it is
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /small/v1/chat/completions
{"model":"good","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: words=1500
--- response_body_like: ^\{"id":"chatcmpl-[^"]+","object":"chat.completion",.*"content":"Mock answer to: hello there (lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ){100}.*"system_fingerprint":"fp_[0-9a-f]+"\}$
--- access_log eval
qr/^p=3 c=\d{4} src=provider attempts=1 provider=ok$/
--- no_error_log
[error]
[alert]



=== TEST 17: over aigw_answer_buffer, chunked: the start read, then the rest
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /small/v1/chat/completions
{"model":"goodc","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: words=1500
--- response_headers
!Content-Length
--- response_body_like: ^\{"id":"chatcmpl-[^"]+","object":"chat.completion",.*"content":"Mock answer to: hello there (lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ){100}.*"system_fingerprint":"fp_[0-9a-f]+"\}$
--- access_log eval
qr/^p=3 c=\d{4} src=provider attempts=1 provider=okc$/
--- error_log
is larger than aigw_answer_buffer, passed on unchecked
--- no_error_log
[error]
[alert]



=== TEST 18: under aigw_answer_buffer, chunked: held and checked
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /small/v1/chat/completions
{"model":"goodc","messages":[{"role":"user","content":"hello there"}]}
--- more_headers
x-mock: words=100
--- response_headers_like
Content-Length: \d+
--- response_body_like: ^\{"id":"chatcmpl-.*"usage":\{.*\}$
--- access_log eval
qr/^p=3 c=\d+ src=provider attempts=1 provider=okc$/
--- no_error_log
passed on unchecked



=== TEST 19: aigw_answer_buffer 0 turns the check off
--- http_config eval: $::HttpConfig
--- config
    location /v1/ {
        aigw_answer_buffer 0;
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"mhtml","messages":[{"role":"user","content":"hi"}]}
--- response_headers_like
Content-Type: text/html.*
--- response_body_like: aigw-mock fault html



=== TEST 20: streams are not held
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"good","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- response_headers_like
Content-Type: text/event-stream.*
--- response_body_like: data: \[DONE\]




=== TEST 21: answers held over many reads, with a length and chunked
About 100 KB each, many times the 16k buffer the provider is read into.
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[map { qq'POST /v1/chat/completions\n{"model":"$_","messages":[{"role":"user","content":"hello there"}]}' }
 qw(good goodc)]
--- more_headers
x-mock: words=16000
--- response_headers_like eval
[("Content-Length: \\d{6}") x 2]
--- response_body_like eval
[(qr/^\{"id":"chatcmpl-[^"]+","object":"chat.completion",.*"content":"Mock answer to: hello there (lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ){1300}.*"system_fingerprint":"fp_[0-9a-f]+"\}$/s) x 2]
--- access_log eval
qr/^p=3 c=\d{5} src=provider attempts=1 provider=okc?$/
--- no_error_log
[error]



=== TEST 22: held chunked answers keep the provider connection alive
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
["GET /_mock/reset",
 map({ qq'POST /v1/chat/completions\n{"model":"goodc","messages":[{"role":"user","content":"$_"}]}' }
     qw(one two three)),
 "GET /_mock/stats"]
--- response_body_like eval
[qr//, qr/Mock answer to: one/, qr/Mock answer to: two/,
 qr/Mock answer to: three/,
 qr/"requests": 3,\s+"connections": 1\b/]



=== TEST 23: brackets that do not match are not JSON
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
my $b = qq'{"choices":[{"text":"]}"}}],"usage":{}}';
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
. length($b) . "\r\nConnection: close\r\n\r\n$b"
--- error_code: 502
--- error_log
aigw: provider "raw" answered 200 with a body that is not valid JSON



=== TEST 24: a second value after the object is not one JSON object
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
my $b = qq'{"id":"x"}\n{"id":"y"}\n';
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
. length($b) . "\r\nConnection: close\r\n\r\n$b"
--- error_code: 502
--- error_log
aigw: provider "raw" answered 200 with bytes after its JSON object



=== TEST 25: an empty 200 is not an answer
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n"
. "Connection: close\r\n\r\n"
--- error_code: 502
--- error_log
aigw: provider "raw" answered 200 with an empty body



=== TEST 26: a compressed answer passes unchecked (lowercase header name)
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
. "content-encoding: br\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
. "\x1f\x8bnot\n"
--- error_code: 200
--- response_headers
Content-Encoding: br
--- response_body eval
"\x1f\x8bnot\n"
--- no_error_log
is not a JSON object



=== TEST 27: Content-Encoding: identity is checked like no encoding
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /v1/chat/completions
{"model":"mraw","messages":[{"role":"user","content":"hi"}]}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
. "Content-Encoding: identity\r\nContent-Length: 4\r\n"
. "Connection: close\r\n\r\nnot\n"
--- error_code: 502
--- error_log
aigw: provider "raw" answered 200 with a body that is not a JSON object
