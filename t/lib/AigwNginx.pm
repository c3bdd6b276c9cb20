package AigwNginx;

# An nginx of its own for the plain Test::More suites (those that need a
# master process, a reload or thousands of requests, which the
# Test::Nginx format does not give):
#
#   my $ngx = AigwNginx->new;             # a prefix and a free port
#   $ngx->write_conf($text);              # conf/nginx.conf, from main level
#   $ngx->start or BAIL_OUT(...);         # as configured: daemon or not
#   my $res = $ngx->request('POST', '/v1/chat/completions',
#                           { Authorization => 'Bearer k' }, $body);
#   $res->{status}, $res->{headers}, $res->{body}
#
# The nginx is stopped (QUIT, then KILL after a bounded wait) when the
# object goes away.  Loopback only; core Perl only.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0)
        or die "no free port: $!";
    return $s->sockport;
}

sub new {
    my ($class) = @_;
    my $dir = tempdir(CLEANUP => 1);

    mkdir "$dir/$_" for qw(logs conf);

    return bless {
        dir    => $dir,
        port   => free_port(),
        nginx  => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        module => (split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || ''))[0],
    }, $class;
}

sub dir    { $_[0]{dir} }
sub port   { $_[0]{port} }
sub module { $_[0]{module} }

sub write_file {
    my ($self, $name, $text) = @_;
    open my $fh, '>', "$self->{dir}/$name" or die "$name: $!";
    print $fh $text;
    close $fh;
}

sub write_conf {
    my ($self, $text) = @_;
    $self->write_file('conf/nginx.conf', $text);
}

# starts nginx; with "daemon off" in the configuration it runs as a child
sub start {
    my ($self) = @_;
    my $conf = do {
        open my $fh, '<', "$self->{dir}/conf/nginx.conf" or die;
        local $/;
        <$fh>;
    };

    if ($conf =~ /^\s*daemon\s+off\s*;/m) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>', "$self->{dir}/logs/stdout";
            open STDERR, '>&', \*STDOUT;
            { exec $self->{nginx}, '-p', $self->{dir}, '-c',
                   'conf/nginx.conf' }
            POSIX::_exit(127);
        }
        $self->{child} = $pid;

    } else {
        my $out = `$self->{nginx} -p $self->{dir} -c conf/nginx.conf 2>&1`;
        if ($?) {
            $self->{start_error} = $out;
            return 0;
        }
    }

    for (1 .. 100) {
        return 1 if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}");
        if ($self->{child} && waitpid($self->{child}, WNOHANG)) {
            delete $self->{child};
            last;
        }
        sleep 0.05;
    }

    $self->{start_error} = $self->error_log;
    return 0;
}

sub start_error { $_[0]{start_error} // '' }

sub master_pid {
    my ($self) = @_;
    open my $p, '<', "$self->{dir}/logs/nginx.pid" or return;
    chomp(my $pid = <$p> // '');
    return $pid || undef;
}

sub signal {
    my ($self, $sig) = @_;
    my $pid = $self->{child} || $self->master_pid or return;
    kill $sig, $pid;
}

sub error_log {
    my ($self) = @_;
    open my $e, '<', "$self->{dir}/logs/error.log" or return '';
    local $/;
    return <$e> // '';
}

# one request on its own HTTP/1.0 connection: the answer ends at close
sub request {
    my ($self, $method, $path, $headers, $body) = @_;
    $body //= '';

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}",
                                  Timeout => 10)
        or return { status => 0, headers => '', body => '' };

    my $req = "$method $path HTTP/1.0\r\nHost: localhost\r\n";
    for my $h (sort keys %{ $headers || {} }) {
        $req .= "$h: $headers->{$h}\r\n";
    }
    $req .= "Content-Length: " . length($body) . "\r\n\r\n$body";
    print $s $req;

    local $/;
    my $raw = <$s> // '';
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};

    return { status => $status // 0, headers => $head // '',
             body => $rest // '' };
}

sub stop {
    my ($self) = @_;

    # waitpid() sets $?, which at exit is the test's exit status
    local $?;

    my $pid = $self->{child} || $self->master_pid or return;

    kill 'QUIT', $pid;
    for (1 .. 100) {
        if ($self->{child}) {
            last if waitpid($pid, WNOHANG);
        } else {
            last unless kill 0, $pid;
        }
        sleep 0.05;
    }
    kill 'KILL', $pid if kill 0, $pid;
    waitpid($pid, 0) if $self->{child};
    delete $self->{child};
}

sub DESTROY {
    my ($self) = @_;
    $self->stop unless $self->{stopped}++;
}

1;
