package AigwMock;

# The mock LLM provider (examples/mock/aigw-mock.js) for Test::Nginx suites.
#
#   use lib 't/lib';
#   use AigwMock;                # before Test::Nginx::Socket
#   use Test::Nginx::Socket;
#
# On import: when $ENV{TEST_NGINX_MOCK_PORT} names a port where a mock already
# answers, that mock is used.  Otherwise a free loopback port is picked, the
# mock is started there, and $ENV{TEST_NGINX_MOCK_PORT} is set to it; the mock
# is stopped at exit (only by the process that started it).  The mock also
# exits by itself when this process dies, since its stdin is a pipe from here.
#
# Helpers (exported): mock_reset(), mock_last(), mock_stats().
# On request: mock_port(), mock_url().
#
# Environment: AIGW_MOCK_NODE (node binary, default "node"),
# AIGW_MOCK_VERBOSE=1 (the mock logs every request to stderr),
# AIGW_SECRETS_DIR (the mock appends every API request it gets there).
#
# Core Perl only (JSON::PP, IO::Socket::INET).

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter ();
use File::Basename qw(dirname);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes ();

our @ISA       = qw(Exporter);
our @EXPORT    = qw(mock_reset mock_last mock_stats);
our @EXPORT_OK = qw(mock_port mock_url);

my $ROOT   = abs_path(dirname(abs_path(__FILE__)) . '/../..');
my $SCRIPT = "$ROOT/examples/mock/aigw-mock.js";

my $START_TIMEOUT = 5;      # seconds to wait for a fresh mock to answer
my $STOP_TIMEOUT  = 3;      # seconds to wait for it to exit on SIGTERM
my $HTTP_TIMEOUT  = 5;      # seconds for one introspection request

my $started;                # import ran
my $child_pid;              # the mock we started, if any
my $owner_pid;              # the process that started it
my $child_stdin;            # write end of the mock's stdin pipe

sub import {
    my $class = shift;
    unless ($started) {
        $started = 1;
        _ensure_mock();
    }
    $class->export_to_level(1, $class, @_);
}

sub mock_port {
    return $ENV{TEST_NGINX_MOCK_PORT};
}

sub mock_url {
    return "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}";
}

# Clears the mock's last request and counters.
sub mock_reset {
    my ($status, $body) = _http('POST', '/_mock/reset');
    die "AigwMock: /_mock/reset failed\n" unless defined $status && $status == 200;
    return 1;
}

# The last API request the mock received, as a hashref
# {method, path, headers => {lowercase name => value}, body, connection, time},
# or undef when none since the last reset.
sub mock_last {
    my ($status, $body) = _http('GET', '/_mock/last');
    die "AigwMock: /_mock/last failed\n" unless defined $status;
    return undef if $status == 404;
    die "AigwMock: /_mock/last answered $status\n" unless $status == 200;
    return JSON::PP::decode_json($body);
}

# {requests => N, connections => N} since the last reset.
sub mock_stats {
    my ($status, $body) = _http('GET', '/_mock/stats');
    die "AigwMock: /_mock/stats failed\n" unless defined $status && $status == 200;
    return JSON::PP::decode_json($body);
}

# --------------------------------------------------------------- internals

sub _ensure_mock {
    my $port = $ENV{TEST_NGINX_MOCK_PORT};
    if (defined $port && $port =~ /^\d+$/ && _alive($port)) {
        return;
    }

    die "AigwMock: $SCRIPT not found\n" unless -f $SCRIPT;

    my $last_error = 'no attempt';
    for my $attempt (1 .. 3) {
        my $free = _free_port() or die "AigwMock: cannot find a free port: $!\n";
        my $pid  = _spawn($free);
        my $err  = _wait_ready($free, $pid);
        if (!defined $err) {
            $ENV{TEST_NGINX_MOCK_PORT} = $free;
            return;
        }
        $last_error = $err;
        _stop();
    }
    die "AigwMock: could not start the mock provider: $last_error\n";
}

sub _free_port {
    my $s = IO::Socket::INET->new(
        Listen    => 1,
        LocalAddr => '127.0.0.1',
        LocalPort => 0,
        Proto     => 'tcp',
        ReuseAddr => 1,
    ) or return;
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub _spawn {
    my ($port) = @_;
    my $node = $ENV{AIGW_MOCK_NODE} || 'node';
    my @cmd = ($node, $SCRIPT, '--port', $port, '--host', '127.0.0.1',
               '--exit-on-stdin-eof');
    push @cmd, '--verbose' if $ENV{AIGW_MOCK_VERBOSE};
    # every request the mock gets, for the run's secrets check
    push @cmd, '--record', "$ENV{AIGW_SECRETS_DIR}/mock.$$.jsonl"
        if $ENV{AIGW_SECRETS_DIR};

    pipe(my $r, my $w) or die "AigwMock: pipe: $!\n";
    my $pid = fork;
    die "AigwMock: fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        close $w;
        open(STDIN, '<&', $r) or POSIX::_exit(126);
        open(STDOUT, '>', '/dev/null') or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "AigwMock: cannot run $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    close $r;
    $child_pid   = $pid;
    $owner_pid   = $$;
    $child_stdin = $w;
    return $pid;
}

# undef when the mock answers, an error string otherwise.
sub _wait_ready {
    my ($port, $pid) = @_;
    my $deadline = Time::HiRes::time() + $START_TIMEOUT;
    while (Time::HiRes::time() < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $code = $? >> 8;
            $child_pid = undef;
            return "the mock exited with status $code";
        }
        # ours, not a mock of another run that took the port first
        return undef if _alive($port, $pid);
        Time::HiRes::sleep(0.05);
    }
    return "no answer on port $port within ${START_TIMEOUT}s";
}

sub _alive {
    my ($port, $pid) = @_;
    my ($status, $body) = _http('GET', '/_mock/stats', $port, 1);
    return 0 unless defined $status && $status == 200 && $body =~ /"requests"/;
    return 1 unless defined $pid;
    return $body =~ /"pid":\s*(\d+)/ && $1 == $pid;
}

sub _stop {
    return unless $child_pid;
    close $child_stdin if $child_stdin;
    $child_stdin = undef;
    kill 'TERM', $child_pid;
    my $deadline = Time::HiRes::time() + $STOP_TIMEOUT;
    while (Time::HiRes::time() < $deadline) {
        my $r = waitpid($child_pid, WNOHANG);
        if ($r == $child_pid || $r == -1) {
            $child_pid = undef;
            return;
        }
        Time::HiRes::sleep(0.02);
    }
    kill 'KILL', $child_pid;
    waitpid($child_pid, 0);
    $child_pid = undef;
}

# One HTTP/1.1 request to the mock; returns (status, body) or () on failure.
sub _http {
    my ($method, $path, $port, $timeout) = @_;
    $port    //= $ENV{TEST_NGINX_MOCK_PORT};
    $timeout //= $HTTP_TIMEOUT;
    return unless defined $port;

    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or return;
    $sock->autoflush(1);
    print {$sock} "$method $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
                . "Connection: close\r\nContent-Length: 0\r\n\r\n";

    my $buf      = '';
    my $sel      = IO::Select->new($sock);
    my $deadline = Time::HiRes::time() + $timeout;
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }
    close $sock;

    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    return unless defined $body && $head =~ m{^HTTP/1\.[01] (\d{3})};
    return ($1, $body);
}

END {
    if ($child_pid && defined $owner_pid && $owner_pid == $$) {
        local $?;
        _stop();
    }
}

1;
