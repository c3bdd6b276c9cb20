# The output guard: aigw_guard_output patterns on answers.  A JSON answer
# that matches becomes a 400 in the client's format; a stream that
# matches ends with the format's terminal error event, the client never
# getting a byte of the match, also when the match spans events and
# whatever the reads the stream comes in (every split point).  The mock
# echoes the prompt in its answer, a word an event (piece=1).

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
    log_format guard '\$uri \$status guard=\$aigw_guard';
    access_log $dir/logs/access.log guard;
    aigw_provider ok http://127.0.0.1:$mock/fault/piece=1/v1;
    aigw_provider claude http://127.0.0.1:$mock/fault/piece=1/v1
                  format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        aigw_guard_output leak "secret\\s+plan" caseless max=24;
        location /v1/ {
            aigw_pass;
        }
        location /plain/v1/ {
            aigw_guard_output other "never-said" max=16;
            aigw_pass;
        }
        location /tiny/v1/ {
            aigw_answer_buffer 64;
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub chat {
    my ($content, $stream) = @_;
    return '{"model":"gpt-4o","stream":' . ($stream ? 'true' : 'false')
        . ',"messages":[{"role":"user","content":"' . $content . '"}]}';
}

sub claude {
    my ($content, $stream) = @_;
    return '{"model":"claude-3-5-haiku","max_tokens":64,"stream":'
        . ($stream ? 'true' : 'false')
        . ',"messages":[{"role":"user","content":"' . $content . '"}]}';
}

my %anthropic = ('anthropic-version' => '2023-06-01');

# the text the client got from a stream's deltas
sub streamed_text {
    my ($body) = @_;
    my $text = '';
    for my $data ($body =~ /^data: (\{.*\})$/mg) {
        my $e = eval { JSON::PP->new->decode($data) } or next;
        if ($e->{choices}) {
            $text .= $_->{delta}{content} // '' for @{ $e->{choices} };
        } elsif (($e->{type} // '') eq 'content_block_delta') {
            $text .= $e->{delta}{text} // '';
        }
    }
    return $text;
}

# JSON answers

{
    my $res = $ngx->request('POST', '/v1/chat/completions', {},
                            chat('a clean question'));
    is($res->{status}, 200, 'JSON, no match: 200');
    like($res->{body}, qr/Mock answer to: a clean question/,
         'JSON, no match: the answer');

    $res = $ngx->request('POST', '/v1/chat/completions', {},
                         chat('tell the SECRET plan'));
    is($res->{status}, 400, 'JSON, a match: 400');
    my $e = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($e->{error}{code}, 'guard_refused', 'JSON, a match: the code');
    like($e->{error}{message} // '', qr/answer was refused .*\(leak\)/,
         'JSON, a match: the reason');
    unlike($res->{body}, qr/secret/i, 'JSON, a match: no text of it');

    $res = $ngx->request('POST', '/v1/messages', \%anthropic,
                         claude('the secret   plan'));
    is($res->{status}, 400, 'Anthropic JSON, a match: 400');
    $e = eval { JSON::PP->new->decode($res->{body}) } // {};
    is($e->{type}, 'error', 'Anthropic JSON: its error shape');
    unlike($res->{body}, qr/secret/i, 'Anthropic JSON: no text of it');

    $res = $ngx->request('POST', '/v1/chat/completions', {},
                         chat('escaped secret\u0020plan'));
    is($res->{status}, 400, 'JSON, a match through an escape: 400');
}

# streams

{
    my $res = $ngx->request('POST', '/v1/chat/completions', {},
                            chat('no plan here', 1));
    is($res->{status}, 200, 'stream, no match: 200');
    is(streamed_text($res->{body}), 'Mock answer to: no plan here',
       'stream, no match: all the text');
    like($res->{body}, qr/data: \[DONE\]\n\n\z/, 'stream, no match: [DONE]');

    $res = $ngx->request('POST', '/v1/chat/completions', {},
                         chat('one two three, the secret plan', 1));
    is($res->{status}, 200, 'stream, a match: 200 went first');
    my $text = streamed_text($res->{body});
    unlike($text, qr/secret/, 'stream, a match: no byte of it');
    like($text, qr/^Mock answer to: /,
         'stream, a match: the text before it, less what is held back');
    like($res->{body}, qr/data: \{"error":\{"message":"The answer was refused by the content policy \(leak\)\.","type":"invalid_request_error","param":null,"code":"guard_refused"\}\}\n\n\z/,
         'stream, a match: ends with the error event');
    unlike($res->{body}, qr/\[DONE\]/, 'stream, a match: no [DONE]');

    $res = $ngx->request('POST', '/v1/messages', \%anthropic,
                         claude('what is the Secret Plan', 1));
    $text = streamed_text($res->{body});
    unlike($text, qr/secret/i, 'Anthropic stream, a match: no byte of it');
    like($res->{body}, qr/event: error\ndata: \{"type":"error","error":\{"type":"invalid_request_error","message":"The answer was refused by the content policy \(leak\)\."\}\}\n\n\z/,
         'Anthropic stream: ends with its error event');
    unlike($res->{body}, qr/message_stop/, 'Anthropic stream: no stop');

    $res = $ngx->request('POST', '/v1/messages', \%anthropic,
                         claude('a plan, not secret', 1));
    is(streamed_text($res->{body}), 'Mock answer to: a plan, not secret',
       'Anthropic stream, no match: all the text');
}

# split points of a stream (the mock writes it in two reads): every byte
# around the match across two events, every sixth elsewhere; the clean
# stream at every seventh of those

for my $case (['openai', '/v1/chat/completions', {}, \&chat],
              ['anthropic', '/v1/messages', \%anthropic, \&claude]) {
    my ($name, $path, $h, $body) = @$case;
    my $clean = $ngx->request('POST', $path, $h,
                              $body->('a b c d e f g secret', 1));
    my $len = length $clean->{body};

    # every byte from the event before the match to its end, around them
    # every sixth (the unguarded stream says where they are)
    my $raw = $ngx->request('POST', "/plain$path", $h,
                            $body->('a b c d e f g secret plan', 1))->{body};
    my $lo = index($raw, 'g ') - 40;
    my $hi = index($raw, 'plan') + 40;
    ok($lo > 0 && $hi > $lo, "$name: where the match is");

    my ($ok_clean, $n_clean, $ok_deny, $n_deny) = (0, 0, 0, 0);
    for my $at (grep { ($_ >= $lo && $_ <= $hi) || $_ % 6 == 0 }
                1 .. $len - 1)
    {
        my %hd = (%$h, 'x-mock' => "splitat=$at");
        my $res;
        if ($at % 7 == 1) {
            $res = $ngx->request('POST', $path, \%hd,
                                 $body->('a b c d e f g secret', 1));
            $n_clean++;
            $ok_clean++ if streamed_text($res->{body})
                           eq 'Mock answer to: a b c d e f g secret';
        }
        $res = $ngx->request('POST', $path, \%hd,
                             $body->('a b c d e f g secret plan', 1));
        my $t = streamed_text($res->{body});
        $n_deny++;
        if ($t !~ /secret/ && $t =~ /^Mock answer/
            && $res->{body} =~ /\(leak\)\.[^\n]*\n\n\z/)
        {
            $ok_deny++;
        } elsif ($n_deny - $ok_deny < 3) {
            diag "split at $at: $res->{body}";
        }
    }
    is($ok_clean, $n_clean, "$name: every 7th split, no match: the text");
    is($ok_deny, $n_deny, "$name: every split, a match: cut before it ($n_deny)");
}

# a JSON answer too large to hold cannot be checked: it never passes
# unguarded, the attempt fails

{
    my $res = $ngx->request('POST', '/tiny/v1/chat/completions', {},
                            chat('a harmless question'));
    is($res->{status}, 502, 'an answer larger than the buffer: 502');
    like($res->{body}, qr/"code":"answer_unreadable"/,
         'the gateway must read it whole to check it');
    like($res->{body}, qr/to check it/, 'it says why');
}

# the log, the variable, the metric

{
    my $log = do {
        open my $fh, '<', "$dir/logs/access.log" or die;
        local $/;
        <$fh>;
    };
    like($log, qr{^/v1/chat/completions 200 guard=output:leak$}m,
         '$aigw_guard: a stream refused');
    like($log, qr{^/v1/chat/completions 400 guard=output:leak$}m,
         '$aigw_guard: a JSON answer refused');
    my $err = $ngx->error_log;
    like($err, qr/aigw: refused by the guard: output:leak/, 'error log');
    unlike($err, qr/secret/i, 'error log: no text');
    my $m = $ngx->request('GET', '/metrics', {}, undef)->{body};
    like($m, qr/^aigw_guard_refusals_total\{rule="output"\} [1-9]\d*$/m,
         'metrics: output');
}

$ngx->stop;

done_testing;
