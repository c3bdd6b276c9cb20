# The test harness against a port taken by someone else between the
# choice of the port and the server's bind, as another run beside this
# one may do: the SDK test's gateway starts again on another port, an
# nginx or a redis-server of a suite does not take the other's listener
# for its own, and a suite run's ports come from its own block.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }

use Test::More;
use IO::Socket::INET;
use POSIX ();
use AigwPort;
use AigwNginx;
use AigwRedis;

# a listener of "another run" on a port of its own
sub hold {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                  LocalPort => $port // 0, ReuseAddr => 1)
        or die "hold: $!";
    return $s;
}

# --- AigwPort: the run's own block, a port in use skipped

{
    my $held = hold();
    my $p = $held->sockport;
    local $ENV{AIGW_TEST_PORTS} = "$p-" . ($p + 1);
    my $got = AigwPort::free_port();
    isnt($got, $p, 'AigwPort: a port in use is not handed out');
    ok($got == $p + 1 || $got < $p || $got > $p + 1,
       'AigwPort: the next of the block, or the kernel\'s');
}

# --- AigwNginx: an nginx that cannot bind is no nginx that started

SKIP: {
    my $ngx = AigwNginx->new;
    my $held = hold();
    $ngx->{port} = $held->sockport;
    my $port = $ngx->port;

    $ngx->write_conf(<<"_EOC_");
daemon off;
master_process off;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 16; }
http {
    access_log off;
    server { listen 127.0.0.1:$port; return 204; }
}
_EOC_

    ok(!$ngx->start, 'AigwNginx: start fails when its port is taken');
    like($ngx->start_error, qr/Address already in use/,
         'AigwNginx: the bind error is what start_error says');
}

# --- AigwRedis: another's redis-server on the port is not ours

SKIP: {
    skip 'no redis-server', 2 unless AigwRedis::available();

    my $first = AigwRedis->new or BAIL_OUT('redis-server does not start');
    my $second = AigwRedis->new(port => $first->port);
    ok(!defined $second,
       'AigwRedis: no server of its own when the port is taken');
    like($first->cmd('PING') // '', qr/^\+PONG/,
         'AigwRedis: the other server is left alone');
}

# --- t/sdk/gateway.sh: its port taken, it starts on another

SKIP: {
    skip 'no node', 4 if system('node --version > /dev/null 2>&1');

    my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '')[0];
    skip 'no module (TEST_NGINX_LOAD_MODULES)', 4 unless $module;

    my $held = hold();
    my $taken = $held->sockport;

    local $ENV{AIGW_MODULE} = $module;
    local $ENV{NGINX_BINARY} = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    local $ENV{AIGW_SDK_PORT} = $taken;

    # the command given: the gateway's models, through its base URL
    my $probe = <<'_EOP_';
my ($port) = $ENV{AIGW_BASE_URL} =~ m{:(\d+)/v1$} or exit 2;
print "port=$port\n";
my $s = IO::Socket::INET->new("127.0.0.1:$port") or exit 3;
print $s "GET /v1/models HTTP/1.0\r\nHost: localhost\r\n"
         . "Authorization: Bearer k\r\n\r\n";
local $/;
print <$s> // "";
_EOP_

    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        { exec 'bash', 't/sdk/gateway.sh', 'perl', '-MIO::Socket::INET',
               '-e', $probe }
        POSIX::_exit(127);
    }
    my $out = do { local $/; <$fh> // '' };
    close $fh;
    my $rc = $? >> 8;

    is($rc, 0, 'gateway.sh: runs its command although its port is taken')
        or diag($out);
    like($out, qr/port $taken is taken, trying another/,
         'gateway.sh: says so');
    my ($port) = $out =~ /^port=(\d+)$/m;
    ok(defined $port && $port != $taken, 'gateway.sh: on another port');
    like($out, qr/"owned_by":"mock"/, 'gateway.sh: which aigw answers');
}

done_testing();
