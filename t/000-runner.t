# Self-test of the Test::Nginx::Socket runner in t/lib, on stock nginx
# features only.  It must pass unchanged under the real Test::Nginx too.

use Test::Nginx::Socket;

repeat_each(2);

# checks per repetition, block by block (see docs/testing.md, "Counting"):
#  1: 3   2: 2   3: 5   4: 4   5: 2   6: 3   7: 3   8: 2   9: 2  10: 3
# 11: 6  12: 2  13: 4  14: 2  15: 2  16: 2  17: 2  18: 2  19: 2  20: 3
# 21: 0 (SKIP)  22: 2  23: 2  24: 2 (LAST)  25: never runs
plan tests => repeat_each() * 62;

$ENV{TEST_NGINX_MY_VAR} = 'xyz';
env_to_nginx('TEST_NGINX_MY_VAR');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: return, default status 200, no_error_log
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]



=== TEST 2: error_code and a one-line response_body_like
--- config
    location = /t {
        return 404;
    }
--- request
GET /t
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 3: add_header, response_headers, !Header
--- config
    location = /t {
        add_header X-Foo bar;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Foo: bar
Content-Type: text/plain
!X-Missing
--- response_body
ok



=== TEST 4: response_headers_like, multi-line response_body_like
--- config
    location = /t {
        add_header X-Pid $pid;
        return 200 "line 1\nline 2\n";
    }
--- request
GET /t
--- response_headers_like
X-Pid: \d+
Server: nginx.*
--- response_body_like
line 1
line \d+



=== TEST 5: more_headers
--- config
    location = /t {
        return 200 "$http_x_a|$http_x_b\n";
    }
--- request
GET /t
--- more_headers
X-A: 1
X-B: two
--- response_body
1|two



=== TEST 6: proxy_pass to a tcp_listen mock; tcp_query sees the body
--- config
    location = /echo {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        # the defaults before nginx 1.29.7 (1.1, no Connection header)
        proxy_http_version 1.0;
        proxy_set_header Host mock;
        proxy_set_header Connection close;
    }
--- request
POST /echo
{"a": 1}
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_query eval
"POST /echo HTTP/1.0\r
Host: mock\r
Connection: close\r
Content-Length: 8\r
\r
{\"a\": 1}"
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
--- response_body
ok



=== TEST 7: tcp_reply in chunks, chunked response to the client
--- config
    location = /chunked {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_http_version 1.1;
    }
--- request
GET /chunked
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
 "5\r\nhello\r\n", "6\r\n world\r\n", "0\r\n\r\n"]
--- response_headers
Transfer-Encoding: chunked
--- response_body chomp
hello world



=== TEST 8: tcp_reply as a code ref, given the query
--- config
    location = /code {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_http_version 1.0;     # the default before nginx 1.29.7
    }
--- request
GET /code?x=1
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
sub {
    my ($line) = $_[0] =~ /^([^\r\n]*)/;
    "HTTP/1.0 200 OK\r\nContent-Length: " . length($line) . "\r\n\r\n$line";
}
--- response_body chomp
GET /code?x=1 HTTP/1.0



=== TEST 9: timeout with abort checks the partial response
--- config
    location = /slow {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_buffering off;
    }
--- request
GET /slow
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhello"
--- tcp_no_close
--- timeout: 500ms
--- abort
--- response_body chomp
hello



=== TEST 10: error_log, a literal and a qr// from eval
--- config
    location = /t {
        return 200;
    }
--- request
GET /nofile.html
--- error_code: 404
--- error_log eval
[qr/open\(\) "[^"]*nofile\.html" failed/, "No such file or directory"]



=== TEST 11: request eval array, one connection each, array expectations
--- config
    location = /a {
        return 200 "a\n";
    }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^a\$", "404 Not Found"]
--- no_error_log
[alert]



=== TEST 12: raw_request
--- config
    location = /raw {
        return 200 "raw $server_protocol $http_host\n";
    }
--- raw_request eval
"GET /raw HTTP/1.0\r\nHost: rawhost\r\n\r\n"
--- response_body
raw HTTP/1.0 rawhost



=== TEST 13: pipelined_requests
--- config
    location ~ ^/p(\d)$ {
        return 200 "p$1\n";
    }
--- pipelined_requests eval
["GET /p1", "GET /p2"]
--- response_body eval
["p1\n", "p2\n"]



=== TEST 14: user_files and placeholders in them and in response_body
--- config
    location = /t {
        return 200;
    }
--- user_files
>>> a.txt
port $TEST_NGINX_SERVER_PORT var $TEST_NGINX_MY_VAR
>>> sub/b.txt
b
--- request
GET /a.txt
--- response_body
port $TEST_NGINX_SERVER_PORT var $TEST_NGINX_MY_VAR



=== TEST 15: a block without config reuses the running nginx
--- request
GET /sub/b.txt
--- response_body
b



=== TEST 16: main_config, http_config, post_main_config
--- main_config
worker_rlimit_nofile 512;
--- http_config
map $uri $m {
    default "mapped";
}
--- post_main_config
pcre_jit off;
--- config
    location = /m {
        return 200 "$m\n";
    }
--- request
GET /m
--- response_body
mapped



=== TEST 17: grep_error_log and grep_error_log_out
--- config
    location = /t {
        return 200;
    }
--- request
GET /gone.txt
--- error_code: 404
--- grep_error_log eval
qr/open\(\) "[^"]+" failed/
--- grep_error_log_out
open() "$TEST_NGINX_SERVER_ROOT/html/gone.txt" failed



=== TEST 18: error_code_like, response_body_unlike
--- config
    location = /r {
        return 302 /elsewhere;
    }
--- request
GET /r
--- error_code_like: ^30[12]$
--- response_body_unlike: 500



=== TEST 19: must_die with the error in error.log
--- config
    no_such_directive on;
--- must_die
--- error_log
unknown directive "no_such_directive"



=== TEST 20: log_level per block
--- log_level: warn
--- config
    location = /l {
        return 200 "l\n";
    }
--- request
GET /l
--- response_body
l
--- no_error_log
[debug]



=== TEST 21: SKIP drops a block
--- SKIP
--- config
    location = /x {
        return 500;
    }
--- request
GET /x
--- response_body
this would fail



=== TEST 22: chomp filter
--- config
    location = /c {
        return 200 "no newline";
    }
--- request
GET /c
--- response_body chomp
no newline



=== TEST 23: request body gets a Content-Length, comments dropped
--- config
    location = /len {
        return 200 "$http_content_length $request_method\n";
    }
--- request
# this line is not part of the request
POST /len
hello world
--- response_body
11 POST



=== TEST 24: LAST stops after this block
--- config
    location = /last {
        return 200 "last\n";
    }
--- request
GET /last
--- response_body
last
--- LAST



=== TEST 25: never runs
--- config
    location = /x {
        return 500;
    }
--- request
GET /x
--- response_body
this would fail
