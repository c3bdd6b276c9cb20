package AigwRedis;

# A redis-server of its own for the suites that need a real Redis:
#
#   my $redis = AigwRedis->new(password => 's3cret')   # or no password
#       or plan skip_all => 'no redis-server';
#   $redis->port;                       # on 127.0.0.1
#   $redis->cmd('INFO', 'clients');     # one command, the raw reply
#   $redis->pause;  $redis->resume;     # SIGSTOP / SIGCONT: a hung Redis
#   $redis->stop;   $redis->start;      # down, then up on the same port
#
# The server runs with a temporary directory, "--save '' --appendonly
# no", and is stopped (and waited for) when the object goes away, at the
# end of the test, also when it dies.  Loopback only; core Perl only.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep);

use AigwPort;

my $server = $ENV{AIGW_REDIS_SERVER} || '/usr/bin/redis-server';
my %live;      # pid => object (a weak reference), for END

sub available { return -x $server }

sub free_port { AigwPort::free_port() }

sub new {
    my ($class, %opt) = @_;

    return undef unless available();

    my $self = bless {
        dir      => tempdir(CLEANUP => 1),
        port     => $opt{port} || free_port(),
        password => $opt{password},
        owner    => $$,        # a forked child must not stop it
    }, $class;

    return $self->start ? $self : undef;
}

sub port     { $_[0]{port} }
sub dir      { $_[0]{dir} }
sub pid      { $_[0]{pid} }
sub password { $_[0]{password} }

sub start {
    my ($self) = @_;

    return 1 if $self->{pid};

    my @args = ('--port', $self->{port}, '--bind', '127.0.0.1',
                '--dir', $self->{dir}, '--save', '', '--appendonly', 'no',
                '--daemonize', 'no', '--logfile', "$self->{dir}/redis.log");
    push @args, '--requirepass', $self->{password}
        if defined $self->{password};

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/stdout";
        open STDERR, '>&', \*STDOUT;
        { exec $server, @args }
        POSIX::_exit(127);
    }

    $self->{pid} = $pid;
    $live{$pid} = $self;
    weaken $live{$pid};

    # ours, not another run's redis-server that holds the port: its
    # process_id (a server that cannot bind exits, but not at once)
    for (1 .. 200) {
        my $r = $self->cmd('INFO', 'server');
        return 1 if defined $r && $r =~ /^process_id:(\d+)\r?$/m
                    && $1 == $pid;
        if (waitpid($pid, WNOHANG)) {
            delete $live{$pid};
            delete $self->{pid};
            return 0;
        }
        sleep 0.025;
    }

    $self->stop;
    return 0;
}

sub stop {
    my ($self) = @_;

    # waitpid() sets $?, which at exit is the test's exit status
    local $?;

    return if $$ != $self->{owner};

    my $pid = delete $self->{pid} or return;
    delete $live{$pid};

    kill 'CONT', $pid;
    kill 'TERM', $pid;
    for (1 .. 200) {
        last if waitpid($pid, WNOHANG);
        sleep 0.025;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

sub pause  { my $p = $_[0]{pid}; kill 'STOP', $p if $p }
sub resume { my $p = $_[0]{pid}; kill 'CONT', $p if $p }

sub log {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/redis.log" or return '';
    local $/;
    return <$fh> // '';
}

# one command on a connection of its own, authenticated when the server
# wants it; the raw RESP reply, undef when there is none
sub cmd {
    my ($self, @args) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}",
                                  Timeout => 5)
        or return undef;

    my $req = '';
    if (defined $self->{password} && $args[0] ne 'PING') {
        $req .= _resp('AUTH', $self->{password});
    }
    $req .= _resp(@args);
    print $s $req;
    shutdown $s, 1;

    local $/;
    my $raw = <$s>;
    return undef unless defined $raw;

    # the AUTH's own "+OK" first
    $raw =~ s/^\+OK\r\n// if defined $self->{password} && $args[0] ne 'PING';
    return $raw;
}

sub _resp {
    my (@args) = @_;
    return '*' . @args . "\r\n"
           . join('', map { '$' . length($_) . "\r\n$_\r\n" } @args);
}

# INFO clients: connected_clients, less the one asking
sub clients {
    my ($self) = @_;
    my $r = $self->cmd('INFO', 'clients') // return undef;
    return $r =~ /connected_clients:(\d+)/ ? $1 - 1 : undef;
}

sub DESTROY {
    my ($self) = @_;
    $self->stop;
}

END {
    $_->stop for grep { defined } values %live;
}

1;
