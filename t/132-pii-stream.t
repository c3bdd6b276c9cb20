# aigw_pii restore in streams: the placeholders of a streamed answer
# become the client's values again, also when a placeholder is split
# across events (the mock cuts the text every N characters, chars=N)
# and across reads (splitat=N, every byte around it); with the output
# guard on the same location too.  Plain Test::More.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;

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
    access_log off;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        aigw_pii redact;
        aigw_pii restore;
        location /v1/ {
            aigw_pass;
        }
        location /g/v1/ {
            aigw_guard_output leak "secret\\s+plan" max=16;
            aigw_pass;
        }
        location /n/v1/ {
            aigw_pii redact;
            aigw_pass;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

my %anthropic = ('anthropic-version' => '2023-06-01');

sub chat {
    my ($content) = @_;
    return '{"model":"gpt-4o","stream":true,"messages":[{"role":"user",'
        . '"content":"' . $content . '"}]}';
}

sub claude {
    my ($content) = @_;
    return '{"model":"claude-3-5-haiku","max_tokens":64,"stream":true,'
        . '"messages":[{"role":"user","content":"' . $content . '"}]}';
}

sub streamed_text {
    my ($body) = @_;
    my $text = '';
    for my $data ($body =~ /^data: (\{.*\})$/mg) {
        my $e = eval { JSON::PP->new->decode($data) } or return "bad: $data";
        if ($e->{choices}) {
            $text .= $_->{delta}{content} // '' for @{ $e->{choices} };
        } elsif (($e->{type} // '') eq 'content_block_delta') {
            $text .= $e->{delta}{text} // '';
        }
    }
    return $text;
}

sub stream {
    my ($path, $body, $opts, $h) = @_;
    my %hd = (%{ $h // {} }, 'x-mock' => $opts);
    my $res = $ngx->request('POST', $path, \%hd, $body);
    return ($res, streamed_text($res->{body}));
}

# the prompt is at most 40 characters of the answer: "Mock answer to: "
my $prompt = 'to bob@x.io, a@b.co';
my $want = "Mock answer to: $prompt";

{
    my ($res, $t) = stream('/n/v1/chat/completions', chat($prompt),
                           'chars=3');
    is($t, 'Mock answer to: to [EMAIL_1], [EMAIL_2]',
       'without restore: the placeholders');
}

for my $n (1 .. 12) {
    my ($res, $t) = stream('/v1/chat/completions', chat($prompt),
                           "chars=$n");
    is($t, $want, "OpenAI, $n characters an event: restored");
    like($res->{body}, qr/data: \[DONE\]\n\n\z/, "OpenAI, $n: [DONE]");
}

for my $n (1, 2, 5, 9) {
    my ($res, $t) = stream('/v1/messages', claude($prompt), "chars=$n",
                           \%anthropic);
    is($t, $want, "Anthropic, $n characters an event: restored");
    like($res->{body}, qr/event: message_stop\n/, "Anthropic, $n: stop");
}

# text in brackets that is no placeholder passes as it is

{
    my $p = 'x [EMAIL_9] [AB [C_1 a@b.co [';
    my ($res, $t) = stream('/v1/chat/completions', chat($p), 'chars=2');
    is($t, "Mock answer to: $p", 'brackets, unknown and unended: kept');
    ($res, $t) = stream('/v1/chat/completions', chat($p), 'chars=1');
    is($t, "Mock answer to: $p", 'the same, a character an event');
}

# every read split around the placeholders, two characters an event

{
    my $raw = $ngx->request('POST', '/n/v1/chat/completions',
                            { 'x-mock' => 'chars=2' }, chat($prompt))->{body};
    my $lo = index($raw, '"[E') - 200;
    $lo = 1 if $lo < 1;
    my $hi = length($raw) - 1;
    my ($ok, $n) = (0, 0);
    for (my $at = $lo; $at < $hi; $at += 2) {
        my ($res, $t) = stream('/v1/chat/completions', chat($prompt),
                               "chars=2,splitat=$at");
        $n++;
        if ($t eq $want) { $ok++ } elsif ($n - $ok < 3) { diag "$at: $t" }
    }
    is($ok, $n, "every other read split: restored ($n)");
}

# with the output guard

{
    my ($res, $t) = stream('/g/v1/chat/completions', chat($prompt),
                           'chars=4');
    is($t, $want, 'restore and output guard: restored');
    ($res, $t) = stream('/g/v1/chat/completions',
                        chat('a@b.co secret plan'), 'chars=4');
    unlike($t, qr/secret/, 'restore and output guard: cut');
    like($res->{body}, qr/\(leak\)/, 'restore and output guard: the error');
}

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

$ngx->stop;

done_testing;
