package AigwNginx;

# An nginx of its own for the plain Test::More suites (those that need a
# master process, a reload or thousands of requests, which the
# Test::Nginx format does not give):
#
#   my $ngx = AigwNginx->new;             # a prefix and a free port
#                                         # (AigwPort: the run's own)
#   $ngx->write_conf($text);              # conf/nginx.conf, from main level
#   $ngx->write_http($text, workers => 2);  # or the http block's lines
#   $ngx->write_keys({ id => 'k', tenant => 't', key => 'sk-k' }, ...);
#   $ngx->start or BAIL_OUT(...);         # as configured: daemon or not
#   my $res = $ngx->request('POST', '/v1/chat/completions',
#                           { Authorization => 'Bearer k' }, $body);
#   $res->{status}, $res->{headers}, $res->{body}
#
# The nginx is stopped (QUIT, then KILL of its process group after a
# bounded wait) when the object goes away, at exit (before File::Temp
# removes the prefix), and on SIGINT, SIGTERM and SIGHUP.  Its master's
# pid is kept in memory from the start on: the pid file may be gone by
# the time the object is destroyed.
#
# The prefix is a temporary folder under $ENV{AIGW_TEST_TMPDIR} when set
# (scripts/run-suite.sh points it into its work dir, where it looks for
# processes left behind), else under the system's.
#
#   $ngx->reloaded($workers, $timeout)    # after a HUP: see below
#
# Loopback only; core Perl only.

use strict;
use warnings;

use Config ();
use Digest::SHA ();
use JSON::PP ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

use AigwPort;

# every instance that may have an nginx running, stopped at exit and on
# a signal by the process that created it (not by a forked child)
my %live;

sub stop_all {
    for my $self (grep { defined } values %live) {
        $self->stop if $self->{owner} == $$;
    }
}

END {
    local $?;
    stop_all();
}

for my $sig (qw(INT TERM HUP)) {
    my $prev = $SIG{$sig};
    $SIG{$sig} = sub {
        stop_all();
        $prev->(@_) if ref $prev eq 'CODE';
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
    };
}

# the suite run's own block of ports where it has one (AigwPort)
sub free_port { AigwPort::free_port() }

sub new {
    my ($class) = @_;
    my $tmp = $ENV{AIGW_TEST_TMPDIR};
    my $dir = tempdir('aigw-nginx.XXXXXX', CLEANUP => 1,
                      $tmp && -d $tmp ? (DIR => $tmp) : (TMPDIR => 1));

    mkdir "$dir/$_" for qw(logs conf);

    my $self = bless {
        dir    => $dir,
        port   => free_port(),
        nginx  => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        module => (split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || ''))[0],
        owner  => $$,
    }, $class;

    $live{"$self"} = $self;
    weaken($live{"$self"});

    return $self;
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

# nginx.conf from the http block's own lines: the module, the logs, the
# pid and the temporary folders in the prefix, around them.
#   workers => N (1), or single => 1 (no master, not a daemon);
#   connections => N (256); access_log => 0: none written here
sub write_http {
    my ($self, $http, %opt) = @_;
    my $dir = $self->{dir};
    my $main = $opt{single} ? "master_process off;\ndaemon off;\n"
                            : 'worker_processes ' . ($opt{workers} // 1)
                              . ";\n";

    $self->write_conf("load_module $self->{module};\n" . $main
        . "error_log $dir/logs/error.log info;\n"
        . "pid $dir/logs/nginx.pid;\n"
        . 'events { worker_connections ' . ($opt{connections} // 256)
        . "; }\n"
        . "http {\n"
        . "    client_body_temp_path $dir/body;\n"
        . "    proxy_temp_path $dir/proxy;\n"
        . (($opt{access_log} // 1) ? "    access_log off;\n" : '')
        . $http
        . "}\n");
}

# conf/keys.json (aigw_keys) from { id, tenant, key => 'sk-...', ... }:
# the key's SHA-256 in place of the key
sub write_keys {
    my ($self, @keys) = @_;
    my @out = map {
        my %k = %$_;
        $k{hash} = Digest::SHA::sha256_hex(delete $k{key});
        \%k;
    } @keys;
    $self->write_file('conf/keys.json',
                      JSON::PP->new->canonical->encode({ keys => \@out }));
}

# starts nginx; with "daemon off" in the configuration it runs as a child
sub start {
    my ($self) = @_;
    delete $self->{stopped};
    my $conf = do {
        open my $fh, '<', "$self->{dir}/conf/nginx.conf" or die;
        local $/;
        <$fh>;
    };

    if ($conf =~ /^\s*daemon\s+off\s*;/m) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            # Linux x86_64: the kernel ends nginx if this process dies
            # hard (prctl PR_SET_PDEATHSIG, SIGTERM)
            syscall(157, 1, 15) if $^O eq 'linux'
                && $Config::Config{archname} =~ /^x86_64/;
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

    # a daemon: its master is known by its pid file, kept from now on.
    # nginx writes its pid file once its sockets are bound: before that,
    # what answers on the port may be another process (a child's nginx
    # tries to bind for seconds before it gives up).
    my $deadline = time + 10;
    while (time < $deadline) {
        if (!$self->{child} && !$self->{master}) {
            $self->{master} = $self->master_pid;
        }
        my $ours = $self->{master}
                   || ($self->{child}
                       && ($self->master_pid // 0) == $self->{child});
        return 1 if $ours
                    && IO::Socket::INET->new(
                           PeerAddr => "127.0.0.1:$self->{port}");
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
    my $pid = $self->{child} || $self->{master} || $self->master_pid
        or return;
    kill $sig, $pid;
}

# the master's worker processes: { pid => process title }
sub workers {
    my ($self) = @_;
    my $master = $self->{child} || $self->{master} or return {};
    my %w;

    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $f, '<', $stat or next;
        my $line = <$f> // next;
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+) /s or next;
        next unless $ppid == $master;
        open my $c, '<', "/proc/$pid/cmdline" or next;
        local $/;
        (my $title = <$c> // '') =~ s/\0+\z//;
        $w{$pid} = $title if $title =~ /worker process/;
    }

    return \%w;
}

# After a HUP: true once the new workers serve and none of the old ones
# ($old, from workers() before the signal) accepts connections any more,
# i.e. each has exited or is "shutting down" (nginx sets that title
# right before it closes its listening sockets).  False after $timeout
# seconds (default 10).
sub reloaded {
    my ($self, $old, $timeout) = @_;
    my $deadline = time + ($timeout // 10);

    while (time < $deadline) {
        my $now = $self->workers;
        my $new = grep { !exists $old->{$_} } keys %$now;
        my $busy = grep { exists $now->{$_}
                          && $now->{$_} !~ /shutting down/ } keys %$old;
        return 1 if $new && !$busy;
        sleep 0.05;
    }

    return 0;
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

    # every answer of the run, for the secrets check of run-suite.sh
    if ($ENV{AIGW_SECRETS_DIR}
        && open my $rec, '>>', "$ENV{AIGW_SECRETS_DIR}/responses.$$")
    {
        print $rec "=== AigwNginx\n>>> $method $path HTTP/1.0\n$raw\n";
        close $rec;
    }
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};

    return { status => $status // 0, headers => $head // '',
             body => $rest // '' };
}

sub stop {
    my ($self) = @_;

    return if $self->{stopped};

    # waitpid() sets $?, which at exit is the test's exit status
    local $?;

    my $pid = $self->{child} || $self->{master} || $self->master_pid
        or return;
    my $workers = $self->workers;

    $self->{stopped} = 1;

    kill 'QUIT', $pid;
    for (1 .. 100) {
        if ($self->{child}) {
            last if waitpid($pid, WNOHANG);
        } else {
            last unless kill 0, $pid;
        }
        sleep 0.05;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        # a daemon leads its own process group, a child does not
        kill 'KILL', -$pid unless $self->{child};
        # workers of a master that is gone
        kill 'KILL', keys %$workers;
    }
    waitpid($pid, 0) if $self->{child};
    delete $self->{child};
    delete $self->{master};

    # its logs outlive its directory, for the secrets check of run-suite.sh
    if (my $dir = $ENV{AIGW_SECRETS_DIR}) {
        for my $log (glob "$self->{dir}/logs/*.log") {
            open my $in, '<', $log or next;
            open my $out, '>>', "$dir/logs.$$" or last;
            local $/;
            print $out "=== $log\n", <$in> // '';
            close $out;
        }
    }
}

sub DESTROY {
    my ($self) = @_;
    delete $live{"$self"};
    # a forked child's copy leaves the nginx to its creator
    return unless $self->{owner} == $$;
    $self->stop;
}

1;
