# Provider host names followed with nginx's resolver: a provider whose
# address changes keeps working without a reload, several addresses share
# the load, a resolver that fails or stays silent keeps the last good
# addresses and blocks no request, and a kept-alive connection never
# takes a request to an address no longer in the set.  A DNS responder
# (t/lib/AigwDns.pm) answers "localhost" from a file the test changes;
# two mock providers listen on the same port of 127.0.0.1 and 127.0.0.2.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }

use AigwNginx;
use AigwDns;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');

# a port free on both loopback addresses: one of the run's own block
# (run-suite's --port and the 19 after it) if free, so that the suites
# run side by side by ctest do not pick it too; else any
sub mock_port {
    my $base = $ENV{TEST_NGINX_SERVER_PORT};
    for my $try (1 .. 20) {
        my $want = $try == 1 && $base && $base =~ /^\d+$/ ? $base + 17 : 0;
        my $a = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                      LocalPort => $want) or next;
        my $p = $a->sockport;
        my $b = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.2',
                                      LocalPort => $p) or next;
        return $p;
    }
    die "no port free on 127.0.0.1 and 127.0.0.2";
}

my $mport = mock_port();
my @mocks;

for my $host ('127.0.0.1', '127.0.0.2') {
    my @cmd = ($ENV{AIGW_MOCK_NODE} || 'node',
               "$root/examples/mock/aigw-mock.js", '--port', $mport,
               '--host', $host, '--exit-on-stdin-eof');
    push @cmd, '--record', "$ENV{AIGW_SECRETS_DIR}/mock.$$.$host.jsonl"
        if $ENV{AIGW_SECRETS_DIR};

    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $w;
        open STDIN, '<&', $r or POSIX::_exit(126);
        open STDOUT, '>', '/dev/null' or POSIX::_exit(126);
        exec @cmd or POSIX::_exit(127);
    }
    close $r;
    push @mocks, { host => $host, pid => $pid, stdin => $w };
}

END {
    # waitpid sets $?, which would become the test's exit status
    local $?;
    for my $m (@mocks) {
        close $m->{stdin};
        kill 'TERM', $m->{pid};
        waitpid $m->{pid}, 0;
    }
}

# a request to one mock itself, for its counters
sub mock_http {
    my ($host, $method, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "$host:$mport", Timeout => 5)
        or return;
    print $s "$method $path HTTP/1.0\r\nHost: mock\r\n"
             . "Content-Length: 0\r\n\r\n";
    local $/;
    my $raw = <$s> // '';
    return $raw =~ m{^HTTP/1\.\d 200} ? (split /\r\n\r\n/, $raw, 2)[1] : undef;
}

for my $m (@mocks) {
    my $deadline = time + 10;
    sleep 0.05 until defined mock_http($m->{host}, 'GET', '/_mock/stats')
                    || time > $deadline;
}

sub mock_requests {
    my ($host) = @_;
    my $body = mock_http($host, 'GET', '/_mock/stats') // '';
    return $body =~ /"requests":\s*(\d+)/ ? $1 : -1;
}

my $dns = AigwDns->new("$dir/dns");
my $dport = $dns->port;

$ngx->write_conf(<<"EOC");
load_module $module;
master_process off;
daemon off;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    access_log off;
    aigw_keepalive 8;
    aigw_provider dyn http://localhost:$mport/v1;
    aigw_model m dyn:gpt-4o-mini;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            resolver 127.0.0.1:$dport valid=1s ipv6=off;
            resolver_timeout 1s;
            aigw_pass;
            add_header X-Upstream \$upstream_addr always;
        }
        location /static/ {
            aigw_pass m;
            add_header X-Upstream \$upstream_addr always;
        }
    }
}
EOC

$dns->answer('127.0.0.1');

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

my $body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';

# one chat request: [status, the address that served it, seconds taken]
sub chat {
    my ($path) = @_;
    my $t = time;
    my $res = $ngx->request('POST', $path || '/v1/chat/completions',
                            { 'Content-Type' => 'application/json' },
                            $body);
    my ($up) = $res->{headers} =~ /^X-Upstream: (\S+)/mi;
    return [$res->{status}, $up // '', time - $t];
}

# requests until one is served by $addr (at most $secs seconds)
sub until_served_by {
    my ($addr, $secs) = @_;
    my $deadline = time + ($secs || 10);
    while (time < $deadline) {
        my $c = chat();
        return 1 if $c->[0] == 200 && $c->[1] eq "$addr:$mport";
        sleep 0.1;
    }
    return 0;
}

sub log_count {
    my ($re) = @_;
    my @n = $ngx->error_log =~ /$re/g;
    return scalar @n;
}

# requests (a resolution starts only with one) until the log has $re
sub wait_log {
    my ($re, $secs) = @_;
    my $deadline = time + ($secs || 10);
    while (time < $deadline) {
        return 1 if log_count($re);
        chat();
        sleep 0.1;
    }
    return 0;
}

# 1. the resolver's address is used

ok(until_served_by('127.0.0.1'), 'served by the resolved 127.0.0.1');

# 2. the address changes: requests follow without a reload

$dns->answer('127.0.0.2');
ok(until_served_by('127.0.0.2'), 'follows the change to 127.0.0.2');

# 3. the kept-alive connection to the old address gets no more requests

mock_http($_->{host}, 'POST', '/_mock/reset') for @mocks;

my @c = map { chat() } 1 .. 3;
is_deeply([map { "$_->[0] $_->[1]" } @c],
          [("200 127.0.0.2:$mport") x 3], 'three requests to 127.0.0.2');
is(mock_requests('127.0.0.1'), 0, 'none reached the old address');
is(mock_requests('127.0.0.2'), 3, 'all reached the new one');

# 4. two addresses: round robin

$dns->answer('127.0.0.1 127.0.0.2');
ok(until_served_by('127.0.0.1'), 'the set of two is used');

my %seen;
$seen{ chat()->[1] }++ for 1 .. 4;
is_deeply(\%seen, { "127.0.0.1:$mport" => 2, "127.0.0.2:$mport" => 2 },
          'round robin over the two addresses');

# 5. a failing resolver: the last good addresses are kept, logged once

$dns->answer('servfail');
my $q = $dns->queries;

my $deadline = time + 10;
my (%failed, $slow);
$slow = 0;
while (time < $deadline && $dns->queries < $q + 3) {
    my $c = chat();
    $failed{"$c->[0] $c->[1]"}++;
    $slow++ if $c->[2] > 0.9;
    sleep 0.1;
}

cmp_ok($dns->queries, '>=', $q + 3, 'the resolver is asked again');
is_deeply([sort keys %failed],
          ["200 127.0.0.1:$mport", "200 127.0.0.2:$mport"],
          'the two addresses serve on while it fails');
is(log_count(qr/"localhost" of provider "dyn" could not be resolved/), 1,
   'the failure is logged once');

$dns->answer('127.0.0.2');
ok(wait_log(qr/"localhost" of provider "dyn" resolves again/),
   'the recovery is logged');
ok(until_served_by('127.0.0.2'), 'served again');

# 6. a silent resolver blocks no request

$dns->answer('drop');
$q = $dns->queries;

$deadline = time + 10;
my %dropped;
while (time < $deadline && $dns->queries < $q + 2) {
    my $c = chat();
    $dropped{"$c->[0] $c->[1]"}++;
    $slow++ if $c->[2] > 0.9;
    sleep 0.1;
}

cmp_ok($dns->queries, '>=', $q + 2, 'the silent resolver is asked again');
is_deeply([keys %dropped], ["200 127.0.0.2:$mport"],
          'the last address serves while the resolver is silent');
is($slow, 0, 'no request waited for the resolver');
ok(wait_log(qr/could not be resolved \(110: Operation timed out\)/),
   'the timeout is logged');

# 7. without a resolver: the configuration's address, as ever

$dns->answer('127.0.0.2');
my $s = chat('/static/chat/completions');
is("$s->[0] $s->[1]", "200 127.0.0.1:$mport",
   'a location without a resolver keeps the address of the configuration');

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');

$ngx->stop;

done_testing();
