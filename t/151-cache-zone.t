# The cache zone under load: 50 identical concurrent misses make one
# provider call, the others wait for its answer; a waiter gives up after
# aigw_cache_lock_timeout; a full zone evicts the least recently used
# entries without an error; entries last across a reload.  Plain
# Test::More: concurrent clients, a master process and a reload.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);

my $module = (split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || ''))[0];

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

sub conf {
    my ($ngx, $zone, $nokeys) = @_;
    my $dir = $ngx->dir;
    my $port = $ngx->port;

    $ngx->write_file('conf/keys.json', JSON::PP->new->encode({ keys => [
        { id => 'k_cache_z', tenant => 'acme',
          hash => sha256_hex('sk-k_cache_z') } ] }));

    $ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 256; }
http {
    client_body_temp_path $dir/body;
    log_format c '\$aigw_cache_status a=\$aigw_attempts \$status';
    access_log $dir/logs/cache.log c;
    @{[ $nokeys ? '' : 'aigw_keys keys.json;' ]}
    aigw_cache_zone cache:$zone;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider slow http://127.0.0.1:$mock/fault/delay=600/v1;
    aigw_provider slower http://127.0.0.1:$mock/fault/delay=1500/v1;
    aigw_model m ok:gpt-4o;
    aigw_model slow slow:gpt-4o;
    aigw_model slower slower:gpt-4o;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_cache on;
            aigw_pass;
        }
        location /impatient/v1/ {
            aigw_cache on;
            aigw_cache_lock_timeout 200ms;
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC
}

sub body {
    my ($model, $text, $extra) = @_;
    return '{"model":"' . $model . '",' . ($extra // '')
           . '"messages":[{"role":"user","content":"' . $text . '"}]}';
}

sub cache {
    my ($res) = @_;
    my ($v) = $res->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    return $v // '';
}

# n requests at once, on n connections; their answers
sub concurrent {
    my ($ngx, $path, $body, $n) = @_;
    my @s;

    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $ngx->port,
                                      Timeout => 10)
            or die "connect: $!";
        push @s, $s;
    }

    for my $s (@s) {
        print $s "POST $path HTTP/1.0\r\nHost: x\r\n"
                 . "Authorization: Bearer sk-k_cache_z\r\n"
                 . "Content-Length: " . length($body) . "\r\n\r\n$body";
    }

    my @r;

    for my $s (@s) {
        local $/;
        my $raw = <$s> // '';
        my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
        my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
        push @r, { status => $status // 0, headers => $head // '',
                   body => $rest // '' };
    }

    return @r;
}

# the access log once it has n lines
sub log_lines {
    my ($ngx, $n) = @_;
    my @l;

    for (1 .. 100) {
        open my $fh, '<', $ngx->dir . '/logs/cache.log' or next;
        @l = <$fh>;
        last if @l >= $n;
        sleep 0.05;
    }

    return @l;
}

my $ngx = AigwNginx->new;
conf($ngx, '1m');
ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

# 50 identical misses at once: one provider call

my @r = concurrent($ngx, '/v1/chat/completions',
                   body('slow', 'fifty at once'), 50);

is(scalar(grep { $_->{status} == 200 } @r), 50, 'all 50 answered');
is(scalar(grep { cache($_) eq 'MISS' } @r), 1, 'one miss');
is(scalar(grep { cache($_) eq 'HIT' } @r), 49, 'the others hit');
is(scalar(grep { $_->{body} eq $r[0]{body} } @r), 50, 'one answer');

my @l = log_lines($ngx, 50);
is(scalar(grep { /^MISS a=1 200$/ } @l), 1, 'one provider call');
is(scalar(grep { /^HIT a=0 200$/ } @l), 49, 'no call for the others');

# streams too

@r = concurrent($ngx, '/v1/chat/completions',
                body('slow', 'ten streams', '"stream":true,'), 10);
is(scalar(grep { cache($_) eq 'MISS' } @r), 1, 'streams: one miss');
is(scalar(grep { cache($_) eq 'HIT' } @r), 9, 'streams: the others hit');
is(scalar(grep { $_->{body} eq $r[0]{body} } @r), 10,
   'streams: the same events');

# a waiter gives up after aigw_cache_lock_timeout and goes alone

@r = concurrent($ngx, '/impatient/v1/chat/completions',
                body('slower', 'impatient'), 3);
is(scalar(grep { $_->{status} == 200 } @r), 3, 'impatient: all answered');
is(scalar(grep { cache($_) eq 'MISS' } @r), 3,
   'impatient: each went to the provider');

# a failed request leaves no lock behind

$ngx->request('POST', '/v1/chat/completions',
              { Authorization => 'Bearer sk-k_cache_z',
                'x-mock' => 'status=400' }, body('m', 'refused'));
my $t0 = time;
my $after = $ngx->request('POST', '/v1/chat/completions',
                          { Authorization => 'Bearer sk-k_cache_z' },
                          body('m', 'refused'));
is(cache($after), 'MISS', 'after an error: a miss');
cmp_ok(time - $t0, '<', 2, 'without waiting for a lock');

# entries last across a reload

my $keep = body('m', 'kept across a reload');
$ngx->request('POST', '/v1/chat/completions',
              { Authorization => 'Bearer sk-k_cache_z' }, $keep);

my %old = %{ $ngx->workers };
$ngx->signal('HUP');
ok($ngx->reloaded(\%old, 20), 'reloaded');

is(cache($ngx->request('POST', '/v1/chat/completions',
                       { Authorization => 'Bearer sk-k_cache_z' }, $keep)),
   'HIT', 'a hit after the reload');

sub no_alerts {
    my ($ngx, $what) = @_;
    open my $el, '<', $ngx->dir . '/logs/error.log' or die;
    my @bad = grep { /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error/ }
              <$el>;
    is_deeply(\@bad, [], "$what: no alert, crit or sanitizer report");
}

no_alerts($ngx, 'load');
$ngx->stop;

# a full zone: the least recently used go, every request is answered
# (and a cache without aigw_keys: no tenant, SHA-256 set up all the same)

my $small = AigwNginx->new;
conf($small, '32k', 1);
ok($small->start, 'nginx with a 32k zone starts')
    or BAIL_OUT($small->start_error);

my @st;
for my $i (1 .. 40) {
    my $res = $small->request('POST', '/v1/chat/completions',
                              { Authorization => 'Bearer sk-k_cache_z',
                                'x-mock' => 'words=300' },
                              body('m', "fill $i"));
    push @st, $res->{status} . ' ' . cache($res);
}

is(scalar(grep { $_ eq '200 MISS' } @st), 40, 'all 40 answered, missed');

my $last = $small->request('POST', '/v1/chat/completions',
                           { Authorization => 'Bearer sk-k_cache_z',
                             'x-mock' => 'words=300' }, body('m', 'fill 40'));
is(cache($last), 'HIT', 'the last stored is there');

my $first = $small->request('POST', '/v1/chat/completions',
                            { Authorization => 'Bearer sk-k_cache_z',
                              'x-mock' => 'words=300' }, body('m', 'fill 1'));
is(cache($first), 'MISS', 'the first was evicted');

my $mt = $small->request('GET', '/metrics');
like($mt->{body}, qr/^aigw_cache_evictions_total [1-9]/m, 'evictions counted');

no_alerts($small, 'full zone');

# configurations nginx refuses

for my $case (
    [ 'aigw_cache on;', qr/"aigw_cache" is on, but no "aigw_cache_zone"/,
      'aigw_cache without a zone' ],
    [ 'aigw_cache_template t 1 "^hi (.*)\$";', qr/has no named captures/,
      'a template without named captures' ],
    [ 'aigw_cache_template t 1 "(?<x>";', qr/pcre2_compile\(\) failed/,
      'a template that does not compile' ],
    [ "aigw_cache_template t 1 \"(?<x>a)\";\n"
      . 'aigw_cache_template t 2 "(?<y>b)";', qr/template "t" is duplicate/,
      'a template twice' ],
)
{
    my ($directives, $re, $what) = @$case;
    my $bad = AigwNginx->new;
    my $bdir = $bad->dir;
    $bad->write_conf(<<"EOC");
load_module $module;
error_log $bdir/logs/error.log info;
pid $bdir/logs/nginx.pid;
events { worker_connections 16; }
http {
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model m ok:gpt-4o;
    server {
        listen 127.0.0.1:@{[ $bad->port ]};
        location /v1/ {
            $directives
            aigw_pass;
        }
    }
}
EOC
    ok(!$bad->start, "$what: refused");
    like($bad->start_error, $re, "$what: said so");
}

done_testing();
