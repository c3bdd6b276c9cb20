# The PII step: the detectors on the text spans of a body, and what each
# mode does with a finding: redact (the provider gets a placeholder, the
# same value the same one), block (400 naming the detector, never the
# data), log (counted only).  Plain Test::More: each redaction case
# compares the exact bytes the mock provider received.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

$ngx->write_conf(<<"EOC");
load_module $module;
master_process off;
daemon off;
pcre_jit on;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    client_max_body_size 4m;
    client_body_buffer_size 4m;
    log_format pii '\$uri \$status pii=\$aigw_pii';
    access_log $dir/logs/access.log pii;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_provider okc http://127.0.0.1:$mock/fault/chunked/v1;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model gpt-4o-chunked okc:gpt-4o;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    aigw_pii_pattern employee_id "\\bEMP-[0-9]{6}\\b";
    aigw_pii_pattern cafe "caf.";
    server {
        listen 127.0.0.1:$port;
        aigw_pii redact;
        location /v1/ {
            aigw_pass;
        }
        location /b/v1/ {
            aigw_pii redact;
            aigw_pii block card ssn secret;
            aigw_pass;
        }
        location /l/v1/ {
            aigw_pii log;
            aigw_pass;
        }
        location /c/v1/ {
            aigw_pii redact employee_id cafe;
            aigw_pass;
        }
        location /r/v1/ {
            aigw_pii redact;
            aigw_pii restore;
            aigw_pass;
        }
        location /off/v1/ {
            aigw_pii off;
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
        location /_mock/ {
            proxy_pass http://127.0.0.1:$mock;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub chat {
    my ($content) = @_;
    return '{"model":"gpt-4o","messages":[{"role":"user","content":"'
        . $content . '"}]}';
}

# what the provider got for a body sent to path
sub provider_got {
    my ($path, $body) = @_;
    my $res = $ngx->request('POST', $path, {}, $body);
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    return ($res, JSON::PP->new->decode($last->{body})->{body});
}

# a text (as JSON-escaped in the body) and what the provider must get
sub redacts {
    my ($name, $text, $want, $path) = @_;
    my ($res, $got) = provider_got($path // '/v1/chat/completions',
                                   chat($text));
    is($res->{status}, 200, "$name: 200");
    is($got, chat($want), "$name: the provider's bytes");
}

sub keeps {
    my ($name, $text, $path) = @_;
    redacts($name, $text, $text, $path);
}

# email

redacts('an email', 'mail bob.smith+x@mail.example.com now',
        'mail [EMAIL_1] now');
redacts('the same value, the same placeholder',
        'a@x.io, b@y.org and a@x.io',
        '[EMAIL_1], [EMAIL_2] and [EMAIL_1]');
redacts('after escapes', 'line\nbob@example.com\tok \u00e9al@example.com',
        'line\n[EMAIL_1]\tok \u00e9[EMAIL_2]');
redacts('mailto: is an email', 'mailto:bob@example.com',
        'mailto:[EMAIL_1]');
keeps('an email inside a URL is not',
      'see https://example.com/u/bob@example.com and '
      . 'https:\/\/bob@example.com\/x');
keeps('no domain, no email', 'user@localhost and @handle and a@b');

# phone numbers

redacts('phones', 'call +1 415 555 0100, +44 20 7946 0958 or (415) 555-0100',
        'call [PHONE_1], [PHONE_2] or [PHONE_3]');
redacts('a dashed US number', 'fax 415-555-0199.', 'fax [PHONE_1].');
keeps('plain numbers are not phones',
      'order 12345678, id 4155550100, year 2024, +12');

# SSN

redacts('an SSN', 'ssn 123-45-6789.', 'ssn [SSN_1].');
keeps('not an SSN', '000-12-3456 666-12-3456 123-00-6789 1123-45-6789');

# cards

redacts('cards', '4111 1111 1111 1111 or 5500-0000-0000-0004 or '
        . '378282246310005', '[CARD_1] or [CARD_2] or [CARD_3]');
keeps('a Luhn-invalid card', '4111 1111 1111 1112 and 1234567890123456');
keeps('all the same digit', '0000 0000 0000 0000');

# IBAN

redacts('IBANs', 'DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432',
        '[IBAN_1] and [IBAN_2]');
keeps('an IBAN with a wrong checksum', 'DE88 3704 0044 0532 0130 00');

# IP addresses

redacts('IPv4', 'host 192.168.1.20, gw 10.0.0.1.', 'host [IPV4_1], gw [IPV4_2].');
keeps('versions are not IPv4', 'v1.2.3.4, 1.2.3.4.5, 999.1.1.1, 1.2.3');
redacts('IPv6', 'at 2001:db8::8a2e:370:7334 or fe80::1 '
        . 'or 2001:0db8:0000:0000:0000:ff00:0042:8329',
        'at [IPV6_1] or [IPV6_2] or [IPV6_3]');
keeps('times and C++ are not IPv6', 'at 10:30:00, std::vector, x::y');

# secrets (made up: none is a key the suites' secrets check knows)

my $jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0'
    . '.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
my $pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNL'
    . 'YLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----';

redacts('secrets',
        'aws AKIAIOSFODNN7EXAMPLE, openai sk-proj-FAKEabcdefghij0123456789'
        . 'KLMNOP, anthropic sk-ant-api03-FAKEabcdefghij0123456789_xyz, '
        . 'gh ghp_FAKEabcdefghijklmnopqrstuvwxyz012345, '
        . "Authorization: Bearer FAKEtoken0123456789abcdef, jwt $jwt, "
        . "key $pem end",
        'aws [AWS_KEY_1], openai [API_KEY_1], anthropic [API_KEY_2], '
        . 'gh [GITHUB_TOKEN_1], Authorization: [BEARER_1], jwt [JWT_1], '
        . 'key [PRIVATE_KEY_1] end');
keeps('not secrets', 'ask-me-anything, AKIA1234, sk-short, ghp_short, '
      . 'bearer of news, eyJonly');

# UTF-8 and escapes around findings

redacts('UTF-8 around a finding',
        "na\xc3\xafve bob\@example.com \xe2\x82\xac 4111111111111111\xf0\x9f\x98\x80",
        "na\xc3\xafve [EMAIL_1] \xe2\x82\xac [CARD_1]\xf0\x9f\x98\x80");

{
    my $res = $ngx->request('POST', '/v1/chat/completions', {},
                            chat("bad \xff\xfe bob\@example.com"));
    is($res->{status}, 400, 'malformed UTF-8: refused by the body step');
    unlike($res->{body}, qr/bob/, 'malformed UTF-8: the data not echoed');
}

# bodies of many messages and parts

{
    my $body = '{"model":"gpt-4o","messages":['
        . '{"role":"system","content":"Agent for bob@example.com"},'
        . '{"role":"user","content":[{"type":"text","text":"I am '
        . 'bob@example.com, card 4111 1111 1111 1111"},{"type":"image_url",'
        . '"image_url":{"url":"https://x.example/a@b.com.png"}},'
        . '{"type":"text","text":"and eve@example.com"}]},'
        . '{"role":"assistant","content":"Hi bob@example.com"},'
        . '{"role":"tool","tool_call_id":"call_bob@example.com",'
        . '"content":"ip 10.1.2.3"}],'
        . '"user":"bob@example.com"}';
    (my $want = $body) =~ s/Agent for bob\@example.com/Agent for [EMAIL_1]/;
    $want =~ s/I am bob\@example.com, card 4111 1111 1111 1111/I am [EMAIL_1], card [CARD_1]/;
    $want =~ s/and eve\@example.com/and [EMAIL_2]/;
    $want =~ s/Hi bob\@example.com/Hi [EMAIL_1]/;
    $want =~ s/ip 10.1.2.3/ip [IPV4_1]/;
    my ($res, $got) = provider_got('/v1/chat/completions', $body);
    is($res->{status}, 200, 'OpenAI, many messages and parts: 200');
    is($got, $want, 'OpenAI: text redacted, ids, URLs of images and '
       . '"user" kept');
}

{
    my $body = '{"model":"claude-3-5-haiku","max_tokens":64,'
        . '"system":[{"type":"text","text":"for bob@example.com"}],'
        . '"messages":[{"role":"user","content":[{"type":"text",'
        . '"text":"ssn 123-45-6789"},{"type":"tool_result",'
        . '"tool_use_id":"t1","content":"bob@example.com"}]}]}';
    (my $want = $body) =~ s/for bob\@example.com/for [EMAIL_1]/;
    $want =~ s/ssn 123-45-6789/ssn [SSN_1]/;
    $want =~ s/"content":"bob\@example.com"/"content":"[EMAIL_1]"/;
    my ($res, $got) = provider_got('/v1/messages', $body);
    is($res->{status}, 200, 'Anthropic, system and tool result: 200');
    is($got, $want, 'Anthropic: text redacted');
}

# block

{
    my $res = $ngx->request('POST', '/b/v1/chat/completions', {},
                            chat('pay with 4111 1111 1111 1111, a@x.io'));
    is($res->{status}, 400, 'block: 400');
    my $e = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($e->{error}{code}, 'pii_detected', 'block: the code');
    like($e->{error}{message}, qr/\(card\)/, 'block: the detector named');
    unlike($res->{body}, qr/4111|a\@x/, 'block: never the data');

    $res = $ngx->request('POST', '/b/v1/messages', {},
                         '{"model":"claude-3-5-haiku","max_tokens":9,'
                         . '"messages":[{"role":"user","content":"ssn '
                         . '123-45-6789 key AKIAIOSFODNN7EXAMPLE"}]}');
    is($res->{status}, 400, 'block, Anthropic: 400');
    $e = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($e->{type}, 'error', 'block, Anthropic: its error shape');
    like($e->{error}{message}, qr/\(aws_key ssn\)/,
         'block, Anthropic: the detectors named');
    unlike($res->{body}, qr/6789|AKIA/, 'block, Anthropic: never the data');

    redacts('block: other detectors still redact', 'a@x.io',
            '[EMAIL_1]', '/b/v1/chat/completions');
}

# log, off, custom patterns

keeps('log: counted, not changed', 'a@x.io and 4111111111111111 and a@x.io',
      '/l/v1/chat/completions');
keeps('off', 'a@x.io', '/off/v1/chat/completions');
redacts('custom patterns, the others off there',
        "EMP-123456, a\@x.io, caf\xc3\xa9 and EMP-1234567",
        '[EMPLOYEE_ID_1], a@x.io, [CAFE_1] and EMP-1234567',
        '/c/v1/chat/completions');

# restore: the client gets its values back in a JSON answer

{
    my $res = $ngx->request('POST', '/r/v1/chat/completions', {},
                            chat('mail bob@example.com, ip 10.0.0.1'));
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    my $got = JSON::PP->new->decode($last->{body})->{body};
    is($got, chat('mail [EMAIL_1], ip [IPV4_1]'),
       'restore: the provider got the placeholders');
    is($res->{status}, 200, 'restore: 200');
    my $a = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($a->{choices}[0]{message}{content},
       'Mock answer to: mail bob@example.com, ip 10.0.0.1',
       'restore: the client got its values');
    my ($cl) = $res->{headers} =~ /^Content-Length: (\d+)/mi;
    is($cl, length $res->{body}, 'restore: Content-Length follows');

    $res = $ngx->request('POST', '/r/v1/messages', {},
                         '{"model":"claude-3-5-haiku","max_tokens":9,'
                         . '"messages":[{"role":"user","content":'
                         . '"a@x.io \\/ 10.0.0.2"}]}');
    $a = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($a->{content}[0]{text},
       'Mock answer to: a@x.io / 10.0.0.2',
       'restore, Anthropic: the client got its values');

    $res = $ngx->request('POST', '/r/v1/chat/completions', {},
                         '{"model":"gpt-4o-chunked","messages":[{"role":'
                         . '"user","content":"mail bob@example.com"}]}');
    $a = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($a->{choices}[0]{message}{content},
       'Mock answer to: mail bob@example.com',
       'restore, a chunked answer held: the client got its values');
    ($cl) = $res->{headers} =~ /^Content-Length: (\d+)/mi;
    is($cl, length $res->{body}, 'restore, chunked: Content-Length follows');

    $res = $ngx->request('POST', '/r/v1/chat/completions', {},
                         chat('mail [EMAIL_1] and [EMAIL_2]'));
    $a = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($a->{choices}[0]{message}{content},
       'Mock answer to: mail [EMAIL_1] and [EMAIL_2]',
       'restore: placeholders of no value of the request stay');

    $res = $ngx->request('POST', '/v1/chat/completions', {},
                         chat('mail bob@example.com'));
    like($res->{body}, qr/Mock answer to: mail \[EMAIL_1\]/,
         'no restore: the client sees the placeholder');

    $res = $ngx->request('POST', '/r/v1/chat/completions', {},
                         '{"model":"gpt-4o","stream":true,"messages":'
                         . '[{"role":"user","content":"mail a@x.io"}]}');
    like($res->{body}, qr/"content":"mail a\@x\.io"/,
         'restore: in streams too (t/132-pii-stream.t for the splits)');
    unlike($res->{body}, qr/\[EMAIL_1\]/, 'restore: no placeholder left');
}

# a large prompt, in bounded time

{
    my $para = 'The quarterly report lists 42 items, see section 3.1 and '
        . 'call the desk at ext. 5512 before 10:30; ';
    my $text = $para x int(1024 * 1024 / length $para);
    my $body = chat("$text reach me at bob\@example.com $text");
    my $t0 = time;
    my ($res, $got) = provider_got('/v1/chat/completions', $body);
    my $dt = time - $t0;
    is($res->{status}, 200, '1 MB prompt: 200');
    ok(index($got, ' reach me at [EMAIL_1] ') > 0,
       '1 MB prompt: the email redacted');
    is(length $got, length($body) - length('bob@example.com')
       + length('[EMAIL_1]'), '1 MB prompt: nothing else changed');
    ok($dt < 10, "1 MB prompt: in bounded time (${dt}s)");
}

# $aigw_pii and the metrics

{
    my $log = do {
        open my $fh, '<', "$dir/logs/access.log" or die;
        local $/;
        <$fh>;
    };
    like($log, qr{^/l/v1/chat/completions 200 pii=email:2,card:1$}m,
         '$aigw_pii: counts by detector');
    like($log, qr{^/b/v1/chat/completions 400 pii=email:1,card:1$}m,
         '$aigw_pii: a blocked request');
    like($log, qr{^/off/v1/chat/completions 200 pii=-$}m,
         '$aigw_pii: empty where off');
    unlike($log, qr/\@x\.io|4111/, 'the access log holds no value');

    my $m = $ngx->request('GET', '/metrics', {}, undef)->{body};
    like($m, qr/^# TYPE aigw_pii_findings_total counter$/m,
         'metrics: the family');
    like($m, qr/^aigw_pii_findings_total\{detector="email",action="log"\} 2$/m,
         'metrics: log');
    like($m, qr/^aigw_pii_findings_total\{detector="card",action="block"\} 1$/m,
         'metrics: block');
    like($m, qr/^aigw_pii_findings_total\{detector="employee_id",action="redact"\} 1$/m,
         'metrics: a custom pattern');

    my $err = $ngx->error_log;
    like($err, qr/aigw: personal data found: email:2,card:1/,
         'error log: counts');
    unlike($err, qr/bob\@|a\@x\.io|4111 1111|AKIAIOSF|123-45-6789/,
           'error log: no value');
}

$ngx->stop;

# misconfigurations, refused by "nginx -t" with the file and line

sub nginx_t {
    my ($http) = @_;
    my $conf = "$dir/conf/bad.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "load_module $module;\nerror_log $dir/logs/bad.log;\n",
              "pid $dir/logs/bad.pid;\nevents { worker_connections 16; }\n",
              "http {\n    aigw_provider p http://127.0.0.1:9/v1;\n$http\n",
              "    server { listen 127.0.0.1:1; location /v1/ {\n",
              "        aigw_pii redact email;\n        aigw_pass;\n    } }\n}\n";
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $out = `$nginx -p $dir -c $conf -t 2>&1`;
    return ($? == 0, $out);
}

for my $case (
    [ 'aigw_pii redact emial;', qr/unknown PII detector "emial" in \S+bad\.conf:7/ ],
    [ 'aigw_pii shred;', qr/invalid parameter "shred".*bad\.conf:7/ ],
    [ 'aigw_pii restore email;', qr/"restore" takes no detectors/ ],
    [ 'aigw_pii_pattern Email "x";', qr/invalid PII pattern name "Email"/ ],
    [ 'aigw_pii_pattern email "x";', qr/"aigw_pii_pattern" directive is duplicate/ ],
    [ 'aigw_pii_pattern secret "x";', qr/invalid PII pattern name "secret"/ ],
    [ 'aigw_pii_pattern p1 "a(";', qr/pcre2_compile\(\) failed.*bad\.conf:7/ ],
    [ 'aigw_pii_pattern ' . ('x' x 32) . ' "x";', qr/1 to 31 bytes/ ],
) {
    my ($http, $re) = @$case;
    my ($ok, $out) = nginx_t("    $http");
    ok(!$ok, "refused: $http");
    like($out, $re, "refused: $http: why");
}

{
    my ($ok, $out) = nginx_t('    aigw_pii_pattern p1 "(?i)x";'
                             . "\n    aigw_pii block p1 secret;");
    ok($ok, 'patterns, groups and modes pass') or diag $out;
}

done_testing;
