# Every split of a stream into two reads, at every byte, gives the client
# the same events and the gateway the same token counts.  The mock sends
# each stream in two writes 3 ms apart ("splitat=N"), so nginx reads it in
# two pieces cut at N; the first read holds several events when N is far
# in.  Then three reads ("splitat2=M"), the middle one a few bytes inside
# an event, so that events span three reads.  The cuts run over the whole
# stream as the provider sends it: with the usage chunk the client does
# not get; and translated streams, whose events the gateway writes anew.
# Plain Test::More: a few thousand requests to one nginx.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use IO::Socket::INET;

use Test::More;
use Time::HiRes qw(sleep time);

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
error_log $dir/logs/error.log warn;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    log_format meter '\$aigw_prompt_tokens \$aigw_completion_tokens '
                     '\$aigw_cached_tokens \$aigw_usage_source';
    access_log $dir/logs/meter.log meter;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt ok:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

# the length of the stream as the provider sends it, asked of the mock
# directly (HTTP/1.0: no chunks), with what the gateway changes
sub mock_length {
    my ($path, $body, $mockopts) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$mock",
                                  Timeout => 10)
        or return 0;

    print $s "POST $path HTTP/1.0\r\nHost: localhost\r\n"
             . "x-mock: $mockopts\r\nContent-Length: " . length($body)
             . "\r\n\r\n$body";

    local $/;
    my $raw = <$s> // '';
    my (undef, $rest) = split /\r\n\r\n/, $raw, 2;
    return length($rest // '');
}

sub request {
    my ($path, $body, $mockopts) = @_;
    return $ngx->request('POST', $path, { 'x-mock' => $mockopts },
                         $body)->{body};
}

# the log line of the request just answered: nginx may write it after
# the client has seen the end of the answer, and a read may catch it half
# written (a line counts once its newline is there)
my $lines = 0;

sub meter_line {
    my $deadline = time + 10;
    while (time < $deadline) {
        if (open my $l, '<', "$dir/logs/meter.log") {
            my @all = grep { /\n\z/ } <$l>;
            if (@all > $lines) {
                $lines = @all;
                chomp(my $last = $all[-1]);
                return $last;
            }
        }
        sleep 0.01;
    }
    return '';
}

# ids and timestamps differ between answers; the rest must not
sub normal {
    my ($s) = @_;
    $s =~ s/"(id|created|request_id)":("[^"]*"|\d+)/"$1":X/g;
    $s =~ s/(msg|chatcmpl|toolu|req)_?[A-Za-z0-9]{6,}/$1_X/g;
    return $s;
}

# name, path, the client's body, mock options, the provider's body, and
# the provider's path where it differs (a translated stream)
my @streams = (
    [ 'OpenAI chat, usage asked for by the gateway', '/v1/chat/completions',
      '{"model":"gpt","stream":true,"messages":'
      . '[{"role":"user","content":"split me at every byte"}]}',
      'cached=2',
      '{"model":"gpt-4o","stream":true,'
      . '"stream_options":{"include_usage":true},"messages":'
      . '[{"role":"user","content":"split me at every byte"}]}' ],
    [ 'OpenAI chat, usage asked for by the client', '/v1/chat/completions',
      '{"model":"gpt","stream":true,"stream_options":{"include_usage":true},'
      . '"messages":[{"role":"user","content":"split me"}]}', '',
      '{"model":"gpt-4o","stream":true,'
      . '"stream_options":{"include_usage":true},'
      . '"messages":[{"role":"user","content":"split me"}]}' ],
    [ 'Anthropic messages', '/v1/messages',
      '{"model":"haiku","stream":true,"max_tokens":50,"messages":'
      . '[{"role":"user","content":"split me at every byte"}]}',
      'cached=3',
      '{"model":"claude-3-5-haiku","stream":true,"max_tokens":50,'
      . '"messages":[{"role":"user","content":"split me at every byte"}]}' ],
    [ 'OpenAI chat served by Anthropic, translated', '/v1/chat/completions',
      '{"model":"haiku","stream":true,"messages":'
      . '[{"role":"user","content":"split me at every byte"}]}',
      'cached=3',
      '{"model":"claude-3-5-haiku","stream":true,"max_tokens":4096,'
      . '"messages":[{"role":"user","content":"split me at every byte"}]}',
      '/v1/messages' ],
    [ 'Anthropic messages served by OpenAI, translated', '/v1/messages',
      '{"model":"gpt","stream":true,"max_tokens":50,"messages":'
      . '[{"role":"user","content":"split me at every byte"}]}',
      'cached=2',
      '{"model":"gpt-4o","stream":true,'
      . '"stream_options":{"include_usage":true},"max_tokens":50,'
      . '"messages":[{"role":"user","content":"split me at every byte"}]}',
      '/v1/chat/completions' ],
);

for my $st (@streams) {
    my ($name, $path, $body, $opts, $sent, $provider_path) = @$st;
    my $o = join ',', grep { length } 'words=4', $opts;

    my $whole = request($path, $body, $o);
    my $want_body = normal($whole);
    my $want_meter = meter_line();

    like($want_meter, qr/^[1-9]\d* [1-9]\d* \d+ provider$/,
         "$name: provider usage in one read ($want_meter)");

    if ($path =~ /chat/) {
        if ($body =~ /include_usage/) {
            like($whole, qr/"choices":\[\],.*"usage":\{/,
                 "$name: the client gets the usage chunk it asked for");
        } else {
            unlike($whole, qr/"choices":\[\]/,
                   "$name: the client does not get the gateway's chunk");
        }
        like($whole, qr/data: \[DONE\]\n\n\z/, "$name: ends with [DONE]");
    }

    my $len = mock_length($provider_path // $path, $sent, $o);

    cmp_ok($len, '>=', $provider_path ? 1 : length $whole,
           "$name: the provider sends $len bytes, the client gets "
           . length $whole);

    my ($bad_body, $bad_meter) = (0, 0);

    my $check = sub {
        my ($how) = @_;

        my $got = request($path, $body, "$o,$how");
        my $m = meter_line();

        if (normal($got) ne $want_body) {
            diag "$name: $how: body differs" if $bad_body++ < 3;
        }

        if ($m ne $want_meter) {
            diag "$name: $how: '$m' != '$want_meter'" if $bad_meter++ < 3;
        }
    };

    for my $k (1 .. $len + 2) {
        $check->("splitat=$k");
    }

    is($bad_body, 0, "$name: the same events at every split of $len bytes");
    is($bad_meter, 0, "$name: the same counts at every split");

    # three reads: a middle read of 1 to 40 bytes, from every 3rd byte on
    ($bad_body, $bad_meter) = (0, 0);

    for (my $k = 1; $k < $len; $k += 3) {
        my $m = $k + 1 + ($k * 7) % 40;
        $check->("splitat=$k,splitat2=$m");
    }

    is($bad_body, 0, "$name: the same events in three reads");
    is($bad_meter, 0, "$name: the same counts in three reads");
}

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

done_testing();
