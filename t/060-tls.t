# https providers: TLS with SNI and certificate verification against a
# configurable CA.  A TLS server in the test's own nginx stands in front of
# the mock provider.

BEGIN { push @INC, 't/lib' }
use AigwMock;
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';
env_to_nginx('AIGW_TEST_KEY');

my $dir = tempdir(CLEANUP => 1);

sub openssl {
    my $cmd = join ' ', 'openssl', @_;
    system("$cmd >/dev/null 2>&1") == 0 or die "failed: $cmd\n";
}

# a CA that signs the provider's certificate, and one that does not
for my $ca ('ca', 'other') {
    openssl('req -x509 -newkey rsa:2048 -nodes -days 2',
            "-keyout $dir/$ca.key -out $dir/$ca.crt",
            "-subj /CN=aigw-test-$ca");
}

open my $ext, '>', "$dir/ext.cnf" or die;
print $ext "subjectAltName=DNS:localhost\n";
close $ext;

openssl("req -newkey rsa:2048 -nodes -keyout $dir/server.key",
        "-out $dir/server.csr -subj /CN=localhost");
openssl("x509 -req -in $dir/server.csr -CA $dir/ca.crt -CAkey $dir/ca.key",
        "-CAcreateserial -days 2 -out $dir/server.crt -extfile $dir/ext.cnf");

$ENV{TEST_NGINX_CERT_DIR} = $dir;

our $TlsServer = <<'_EOC_';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERT_DIR/server.crt;
        ssl_certificate_key $TEST_NGINX_CERT_DIR/server.key;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
            add_header X-SNI $ssl_server_name;
        }
    }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: verified TLS, with SNI
--- http_config eval
"    aigw_provider tls https://localhost:\$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m tls:gpt-4o;
" . $::TlsServer
--- config
    aigw_ssl_trusted_certificate $TEST_NGINX_CERT_DIR/ca.crt;
    location /v1/ {
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"over tls"}]}
--- response_headers
X-SNI: localhost
--- response_body_like: Mock answer to: over tls
--- no_error_log
[error]



=== TEST 2: a certificate from another CA is refused
--- http_config eval
"    aigw_provider tls https://localhost:\$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m tls:gpt-4o;
" . $::TlsServer
--- config
    aigw_ssl_trusted_certificate $TEST_NGINX_CERT_DIR/other.crt;
    location /v1/ {
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- error_code: 502
--- response_body_like: "code":"upstream_error"
--- error_log
upstream SSL certificate verify error



=== TEST 3: verification off
--- http_config eval
"    aigw_provider tls https://localhost:\$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m tls:gpt-4o;
" . $::TlsServer
--- config
    aigw_ssl_verify off;
    aigw_ssl_trusted_certificate $TEST_NGINX_CERT_DIR/other.crt;
    location /v1/ {
        aigw_pass;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- response_body_like: Mock answer



=== TEST 4: TLS connections are kept alive too
--- http_config eval
"    aigw_provider tls https://localhost:\$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m tls:gpt-4o;
" . $::TlsServer
--- config
    aigw_ssl_trusted_certificate $TEST_NGINX_CERT_DIR/ca.crt;
    location /v1/ {
        aigw_pass;
        add_header X-Conn $upstream_connect_time;
    }
--- request eval
[
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"1\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"2\"}]}"
]
--- response_headers_like eval
["X-Conn: [0-9.]+", "X-Conn: 0\\.000"]
--- response_body_like eval
[qr/Mock answer/, qr/\[DONE\]/]



=== TEST 5: a TLS provider falls back to a plain one
--- http_config eval
"    aigw_provider tls https://localhost:\$TEST_NGINX_RAND_PORT_1/v1
                  key_env=AIGW_TEST_KEY;
    aigw_provider plain http://127.0.0.1:\$TEST_NGINX_MOCK_PORT/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model a tls:gpt-4o-tls;
    aigw_model b plain:gpt-4o-plain;
    aigw_route r a b;
" . $::TlsServer
--- config
    aigw_ssl_trusted_certificate $TEST_NGINX_CERT_DIR/other.crt;
    location /v1/ {
        aigw_pass;
        add_header X-Provider $aigw_provider;
    }
--- request
POST /v1/chat/completions
{"model":"r","messages":[{"role":"user","content":"hi"}]}
--- response_headers
X-Provider: plain
--- response_body_like: "model":"gpt-4o-plain"
