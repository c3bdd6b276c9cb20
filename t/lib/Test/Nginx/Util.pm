package Test::Nginx::Util;

# A small, self-contained stand-in for openresty's Test::Nginx::Util.
#
# It keeps to the data format and the verdicts of the real runner
# (Test::Nginx 0.33), see /work/shared/TEST-NGINX.md, but runs nginx as
# its own child with "daemon off" so that a bad configuration fails at
# once with nginx's stderr, and no nginx is left behind.

use strict;
use warnings;

use base 'Exporter';

use Config ();
use Cwd ();
use File::Path qw( make_path remove_tree );
use File::Spec ();
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use List::Util qw( shuffle );
use POSIX qw( SIGQUIT SIGKILL SIGTERM WNOHANG );
use Socket qw( SOCK_STREAM );
use Time::HiRes qw( sleep time );
use Test::More ();

our $VERSION = '0.33';

sub gen_rand_port (;$$);
sub bail_out (@);
sub expand_env_in_text ($$$);
sub parse_time ($);
sub is_str (@);

# Settings, with the names and defaults of the real runner.

our $Verbose          = $ENV{TEST_NGINX_VERBOSE};
our $NoShuffle        = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Timeout          = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $LoadModules      = $ENV{TEST_NGINX_LOAD_MODULES};
our $Randomize        = $ENV{TEST_NGINX_RANDOMIZE};
our $NginxBinary      = $ENV{TEST_NGINX_BINARY} || find_nginx();
our $LogLevel         = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $ServerPort       = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                        || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $TestNginxSleep   = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ServerAddr       = '127.0.0.1';
our $ServerName       = 'localhost';
our $Workers          = 1;
our $WorkerConnections = 64;
our $NoRootLocation   = 0;
our $NoLongString;
our $RepeatEach       = 1;
our $ConfigPreamble   = '';
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our @TestCleanupHandlers;

our $RunTestHelper;
our $CheckErrorLog;
our $FilterHttpConfig;
our $RandPorts;
our $PrevConfig;
our $NginxVersion;
our $NginxRawVersion;
our $OpenSSLVersion;
our $ErrLogFilePos = 0;

# Our own children.  $InSubprocess is set in every forked child so that
# it never runs the parent's clean-up.
our $NginxPid;
our $NginxExitStatus;
our $TcpServerPid;
our $InSubprocess;

# Upper bounds of the few waits that the real runner leaves open.
our $StartWait   = 10;     # s for nginx to write its pid file
our $ConnectWait = 3;      # s of retries while nginx is running
our $MockLife    = 300;    # s a mock backend child may live at most
our $LogWait     = 5;      # s to wait for an expected log line

srand($$ ^ int(time * 1000));

if ($Randomize) {
    $ServerPort = gen_rand_port(1000, {});
    if (!defined $ServerPort) {
        die "Cannot find an available listening port number\n";
    }
    $ServerPortForClient = $ServerPort;
}

our $ServRoot;
if ($Randomize) {
    $ServRoot = File::Spec->rel2abs("t/servroot_" . $ServerPort);

} else {
    $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                    || 't/servroot');
}
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $StderrFile = File::Spec->catfile($LogDir, 'nginx.stderr');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $CacheDir   = File::Spec->catfile($ServRoot, 'cache');

our @EXPORT = qw(
    expand_env_in_text
    env_to_nginx
    is_str
    check_accum_error_log
    is_running
    $NoLongString
    no_long_string
    $ServerAddr
    server_addr
    $ServerName
    server_name
    parse_time
    verbose
    sleep_time
    bail_out
    add_cleanup_handler
    add_test_cleanup_handler
    access_log_data
    error_log_data
    setup_server_root
    write_config_file
    get_canon_version
    get_nginx_version
    trim
    show_all_chars
    parse_headers
    run_tests
    get_pid_from_pidfile
    $ServerPortForClient
    $ServerPort
    $NginxVersion
    $PidFile
    $ServRoot
    $ConfFile
    $RunTestHelper
    $CheckErrorLog
    $FilterHttpConfig
    $RepeatEach
    add_block_preprocessor
    timeout
    worker_connections
    workers
    master_on
    master_off
    config_preamble
    repeat_each
    master_process_enabled
    log_level
    no_shuffle
    no_root_location
    html_dir
    server_root
    server_port
    server_port_for_client
    is_tcp_port_used
);


# Setup calls

sub find_nginx {
    for my $dir (split /:/, $ENV{PATH} || '') {
        next if $dir eq '';
        my $path = File::Spec->catfile($dir, 'nginx');
        return $path if -f $path && -x _;
    }
    return '/usr/sbin/nginx';
}

sub env_to_nginx (@) {
    if (!@_) {
        Carp::croak("env_to_nginx: no arguments specified");
    }
    for my $v (@_) {
        if ($v !~ /^[A-Za-z_]/ || $v =~ /\n/) {
            Carp::croak("env_to_nginx: bad argument value: $v\n");
        }
        push @EnvToNginx, $v;
    }
}

sub no_long_string () { $NoLongString = 1 }
sub no_shuffle () { $NoShuffle = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub config_preamble ($) { $ConfigPreamble = shift }
sub html_dir () { $HtmlDir }
sub server_root () { $ServRoot }
sub sleep_time { $TestNginxSleep }
sub verbose { $Verbose }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }

sub master_process_enabled (@) {
    if (@_) {
        $MasterProcessEnabled = shift() ? 'on' : 'off';
    } else {
        return $MasterProcessEnabled;
    }
}

# The getters/setters of the real runner.
sub _getset {
    my ($ref, @args) = @_;
    if (@args) {
        $$ref = shift @args;
        return;
    }
    return $$ref;
}

sub server_addr (@) { _getset(\$ServerAddr, @_) }
sub server_name (@) { _getset(\$ServerName, @_) }
sub server_port (@) { _getset(\$ServerPort, @_) }
sub server_port_for_client (@) { _getset(\$ServerPortForClient, @_) }
sub timeout (@) { _getset(\$Timeout, @_) }
sub worker_connections (@) { _getset(\$WorkerConnections, @_) }
sub workers (@) { _getset(\$Workers, @_) }
sub log_level (@) { _getset(\$LogLevel, @_) }

sub repeat_each (@) {
    if (@_) {
        $RepeatEach = shift;
    }
    return $RepeatEach;
}


# Small helpers

sub is_running ($) {
    my $pid = shift;
    return kill 0, $pid;
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub parse_time ($) {
    my $tm = shift;

    if (defined $tm) {
        if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
            $tm = $tm / 1000;

        } elsif ($tm =~ s/([^_a-zA-Z])s$/$1/) {
            # seconds already
        }
    }

    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef if !defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/gs;
    $s =~ s/\r/\\r/gs;
    $s =~ s/\t/\\t/gs;
    return $s;
}

# "Key: value" lines to a hash; "!Key" gives undef (must be absent).
sub parse_headers ($) {
    my $s = shift;
    my %headers;

    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $headers{$line} = undef;

        } else {
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            $headers{$key} = $val;
        }
    }

    return \%headers;
}

# Shows where two strings start to differ, escaped, as Test::LongString
# would; the verdict is plain string equality.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;

    local $Test::Builder::Level = $Test::Builder::Level + 1;

    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }

    if ($NoLongString || !defined $got || !defined $expected) {
        return Test::More::is($got, $expected, $desc);
    }

    my $tb = Test::More->builder;
    my $ok = $tb->ok($got eq $expected, $desc);
    if (!$ok) {
        my $i = 0;
        my $min = length $got < length $expected
                  ? length $got : length $expected;
        $i++ while $i < $min
                   && substr($got, $i, 1) eq substr($expected, $i, 1);

        my $from = $i > 30 ? $i - 30 : 0;
        my $line = 1 + (substr($got, 0, $i) =~ tr/\n//);
        $tb->diag(sprintf("         got: \"%s\"\n    expected: \"%s\"\n"
                          . "    length got %d, expected %d; strings "
                          . "begin to differ at char %d (line %d)",
                          _excerpt($got, $from),
                          _excerpt($expected, $from),
                          length $got, length $expected, $i + 1, $line));
    }
    return $ok;
}

sub _excerpt {
    my ($s, $from) = @_;
    my $part = substr($s, $from, 120);
    $part =~ s/([\\"])/\\$1/g;
    $part =~ s/\r/\\r/g;
    $part =~ s/\n/\\n/g;
    $part =~ s/\t/\\t/g;
    $part =~ s/([\0-\037\177-\377])/sprintf('\\x{%02x}', ord $1)/ge;
    return ($from ? '...' : '') . $part
           . ($from + 120 < length $s ? '...' : '');
}

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub get_nginx_version () {
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        $out //= '';
        bail_out("Failed to run \"$NginxBinary -V\" (set TEST_NGINX_BINARY"
                 . "): $out");
    }

    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?}s) {
        $OpenSSLVersion = get_canon_version($1, $2, $3);
        $OpenSSLVersion .= sprintf("%03d", ord($4) - ord('a')) if $4;
    }

    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }

    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pid_from_pidfile ($) {
    my ($name) = @_;

    open my $in, '<', $PidFile or return undef;
    my $pid = do { local $/; <$in> };
    close $in;
    return undef if !defined $pid;
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub is_tcp_port_used ($) {
    my $port = shift;

    open my $fh, '<', '/proc/net/tcp' or return 0;
    while (my $line = <$fh>) {
        if ($line =~ /^ *\d+: [0-9A-F]+:([0-9A-F]+) / && hex($1) == $port) {
            close $fh;
            return 1;
        }
    }
    close $fh;
    return 0;
}

sub gen_rand_port (;$$) {
    my ($tries, $used_ports) = @_;

    $tries //= 1000;
    $used_ports //= {};

    # a suite run's own block of ports, where run-suite.sh gives one: no
    # port another run may take between this bind and the block's
    require AigwPort;
    if (AigwPort::range()) {
        for (1 .. 20) {
            my $port = AigwPort::free_port();
            return $port unless $used_ports->{$port};
        }
    }

    for (my $i = 0; $i < $tries; $i++) {
        my $port = int(rand 63547) + 1988;

        next if $used_ports->{$port};

        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr,
            LocalPort => $port,
            Proto     => 'tcp',
            Listen    => 5,
            Reuse     => 1,
        );

        if (defined $sock) {
            $sock->close();
            return $port;
        }
    }

    return undef;
}

# $TEST_NGINX_* placeholders from %ENV; $TEST_NGINX_RAND_PORT_<n> gives a
# free port, the same one for the whole block.
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;

    return undef if !defined $text;

    $rand_ports //= {};

    my $used = { $ServerPort => 1, map { $_ => 1 } values %$rand_ports };

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;

        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            if (!defined $rand_ports->{$var}) {
                my $port = gen_rand_port(1000, $used);
                if (!defined $port) {
                    bail_out("$name - Cannot find an available listening "
                             . "port number for $var.\n");
                }
                $rand_ports->{$var} = $port;
                $used->{$port} = 1;
            }
            $val = $rand_ports->{$var};

        } else {
            if (!defined $ENV{$var}) {
                bail_out("$name - No environment $var defined.\n");
            }
            $val = $ENV{$var};
        }

        $val;
    }ge;

    return $text;
}


# Server root, user files and nginx.conf

sub setup_server_root ($) {
    my $first_time = shift;

    if (-d $ServRoot) {
        # Only what the runner made itself, as the real one does: a
        # mistaken TEST_NGINX_SERVROOT must not lose anybody's files.
        remove_tree($ConfDir, glob("$ServRoot/*_cache"),
                    glob("$ServRoot/*_temp"));
        remove_tree($CacheDir, $HtmlDir, $LogDir);
        rmdir $ServRoot
            or bail_out("Can't remove $ServRoot (not empty?): $!");
    }

    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        mkdir $dir or bail_out("Failed to do mkdir $dir: $!\n");
    }

    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index
        or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

sub run_customer_init_script ($) {
    my $block = shift;
    my $name = $block->name;

    if ($block->post_setup_server_root) {
        eval $block->post_setup_server_root;
        if ($@) {
            bail_out("$name - post_setup_server_root failed: $@");
        }
    }
}

sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;

    my $name = $block->name;
    my $files = $block->user_files;

    return if !$files;

    if (!ref $files) {
        my @list;
        my ($fname, $body, $date);

        for my $line (split /^/m, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                push @list, [$fname, $body, $date] if $fname;
                ($fname, $date, $body) = ($1, $2, undef);

            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body, $date] if $fname;
        $files = \@list;

    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;

        $body //= '';

        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";

        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }

        $body = expand_env_in_text($body, $name, $rand_ports);

        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;

        if ($date) {
            my $cmd = "TZ=GMT touch -t '$date' $HtmlDir/$fname";
            system($cmd) == 0
                or bail_out("Failed to run shell command: $cmd\n");
        }
    }
}

our $NginxV;

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;

    my $name = $block->name;
    my $http_config = $block->http_config;
    my $main_config = $block->main_config;
    my $post_main_config = $block->post_main_config;
    my $err_log_file = $block->error_log_file;
    my $server_name = $block->server_name;

    $http_config = expand_env_in_text($http_config, $name, $rand_ports)
                   // '';
    $config //= '';

    if ($FilterHttpConfig) {
        $http_config = $FilterHttpConfig->($http_config);
    }

    $main_config //= '';

    if ($LoadModules) {
        my @modules = map { "load_module $_;" } grep { $_ }
                      split /\s+/, $LoadModules;
        $main_config = join ' ', @modules, $main_config if @modules;
    }

    $main_config = expand_env_in_text($main_config, $name, $rand_ports);
    $post_main_config = expand_env_in_text($post_main_config // '', $name,
                                           $rand_ports);

    $err_log_file = expand_env_in_text($err_log_file || $ErrLogFile, $name,
                                       $rand_ports);
    $server_name //= $ServerName;
    $server_name =~ s/\\/\\\\/g;
    $server_name =~ s/'/\\'/g;

    $NginxV //= `$NginxBinary -V 2>&1` // '';

    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
        if $http_config !~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
        if $http_config !~ /\bproxy_temp_path\b/;
    for my $m (qw( fastcgi scgi uwsgi )) {
        push @temp, "${m}_temp_path $ServRoot/${m}_temp;"
            if $NginxV !~ /--without-http_${m}_module/;
    }

    my $env = '';
    for my $v (@EnvToNginx) {
        my $q = $v =~ /\s/ ? "'$v'" : $v;
        $env .= "env $q;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    # The real runner writes "daemon on"; nginx runs here as our own
    # child instead, in the foreground.
    my $user = $> == 0 ? "user root;\n" : '';

    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<_EOC_;
worker_processes  $Workers;
daemon off;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
env MOCKEAGAIN_VERBOSE;
env MOCKEAGAIN;
env MOCKEAGAIN_WRITE_TIMEOUT_PATTERN;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
env DYLD_INSERT_LIBRARIES;
env DYLD_FORCE_FLAT_NAMESPACE;
$env
$main_config

http {
    access_log $AccLogFile; @temp

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort;
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
}
env ASAN_OPTIONS;
env MOCKNOEAGAIN_VERBOSE;
env MOCKNOEAGAIN;
$user
_EOC_
    close $out;
}


# nginx as our child

# Linux only: have the kernel end the child if this runner dies hard.
sub _set_pdeathsig ($) {
    my $sig = shift;
    return if $^O ne 'linux';
    my $arch = $Config::Config{archname} || '';
    my $nr = $arch =~ /^x86_64/ ? 157 : $arch =~ /^aarch64/ ? 167 : undef;
    syscall($nr, 1, $sig) if defined $nr;    # prctl(PR_SET_PDEATHSIG)
}

sub _child_setup () {
    $InSubprocess = 1;
    for my $sig (qw( INT TERM HUP QUIT PIPE ALRM CHLD )) {
        $SIG{$sig} = 'DEFAULT';
    }
    my $tb = Test::More->builder;
    $tb->no_ending(1);
}

sub read_file_text ($) {
    my $path = shift;
    open my $in, '<', $path or return '';
    local $/;
    my $s = <$in>;
    close $in;
    return $s // '';
}

sub tail_text ($$) {
    my ($s, $n) = @_;
    my @lines = split /\n/, $s;
    @lines = @lines[-$n .. -1] if @lines > $n;
    return join '', map { "$_\n" } @lines;
}

sub _describe_status ($) {
    my $status = shift;
    return "exit code " . ($status >> 8) if !($status & 127);
    return "signal " . ($status & 127)
           . (($status & 128) ? " (core dumped)" : '');
}

# Starts nginx; returns (1) when it runs or (0, $why) when it exited.
sub start_nginx ($) {
    my $name = shift;

    my @cmd = ($NginxBinary);
    if (!defined $NginxVersion || $NginxVersion >= 1.019005) {
        push @cmd, '-e', $ErrLogFile;
    }
    push @cmd, '-p', "$ServRoot/", '-c', $ConfFile;

    warn "$name - starting: @cmd\n" if $Verbose;

    my $pid = fork();
    if (!defined $pid) {
        bail_out("$name - fork() failed: $!");
    }

    if ($pid == 0) {
        _child_setup();
        setpgrp(0, 0);
        _set_pdeathsig(SIGTERM);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $StderrFile;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "cannot exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }

    $NginxPid = $pid;
    undef $NginxExitStatus;

    my $deadline = time + $StartWait;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $status = $?;
            undef $NginxPid;
            return (0, _describe_status($status), $status);
        }

        my $p = get_pid_from_pidfile($name);
        return (1) if defined $p && $p == $pid;

        if (time > $deadline) {
            stop_nginx($name);
            return (0, "no pid file after $StartWait s", -1);
        }

        sleep 0.005;
    }
}

sub nginx_start_failure ($$) {
    my ($name, $why) = @_;

    my $stderr = read_file_text($StderrFile);
    my $errlog = read_file_text($ErrLogFile);
    my $msg = "nginx failed to start ($why)";
    $msg .= "\n--- nginx stderr:\n" . tail_text($stderr, 30) if $stderr ne '';
    if ($errlog ne '' && $errlog ne $stderr) {
        $msg .= "--- error.log (tail):\n" . tail_text($errlog, 20);
    }
    $msg .= "--- conf: $ConfFile";
    return $msg;
}

# Reaps nginx if it is gone; returns the wait status or undef.
sub nginx_exited () {
    return undef if !defined $NginxPid;
    if (waitpid($NginxPid, WNOHANG) == $NginxPid) {
        $NginxExitStatus = $?;
        undef $NginxPid;
        return $NginxExitStatus;
    }
    return undef;
}

sub _wait_pid ($$) {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return 0 if $r == -1;
        sleep 0.01;
    }
    return undef;
}

# QUIT, then KILL of nginx's process group after a bounded wait.
sub stop_nginx ($) {
    my $name = shift;

    my $pid = $NginxPid;
    return if !defined $pid;
    undef $NginxPid;

    local $?;

    kill SIGQUIT, $pid;
    my $status = _wait_pid($pid, $Timeout);

    if (!defined $status) {
        warn "$name - nginx $pid did not quit in $Timeout s; killing it\n";
        kill SIGKILL, -$pid;
        kill SIGKILL, $pid;
        $status = _wait_pid($pid, 5);
    }

    # Workers of a master that is gone.
    kill SIGKILL, -$pid if kill 0, -$pid;

    if (defined $status && ($status & 127)
        && ($status & 127) != SIGKILL)
    {
        warn "WARNING: $name - nginx exited on ", _describe_status($status),
             "\n";
    }
}

sub kill_child ($$) {
    my ($pid, $name) = @_;

    return if !defined $pid;

    local $?;

    kill SIGTERM, $pid;
    if (!defined _wait_pid($pid, $Timeout)) {
        warn "$name - child $pid did not exit; killing it\n";
        kill SIGKILL, $pid;
        _wait_pid($pid, 5);
    }
}

sub cleanup () {
    for my $hdl (@CleanupHandlers) {
        $hdl->();
    }

    if (defined $TcpServerPid) {
        kill_child($TcpServerPid, 'cleanup');
        undef $TcpServerPid;
    }

    stop_nginx('cleanup');
}

sub cleanup_test ($) {
    my $block = shift;
    for my $hdl (@TestCleanupHandlers) {
        $hdl->($block);
    }
}

for my $sig (qw( INT TERM HUP )) {
    $SIG{$sig} = sub {
        return if $InSubprocess;
        cleanup();
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
        exit 1;
    };
}

$SIG{PIPE} = 'IGNORE';

END {
    if (!$InSubprocess) {
        local $?;
        cleanup();

        if ($Randomize && defined $ServRoot && -d $ServRoot
            && $ServRoot =~ m{/t/servroot_\d+$})
        {
            remove_tree($ServRoot);
        }
    }
}


# Logs

# The new error.log lines.  With $want (a code ref given the lines), the
# file is read again until $want says they are all there or $LogWait s
# have passed: a line nginx writes after the response (the log phase, a
# closed upstream) may come late on a busy machine, and a read may catch
# the last line half written.  A check for a line's absence has nothing
# to wait for, and gets what is there after the usual short sleep (and
# the end of a line caught half written).
sub error_log_data (;$) {
    my $want = shift;

    # for what nginx logs in the log phase, after the response
    sleep $TestNginxSleep * 3;

    my $deadline = time + $LogWait;
    my ($lines, $end);

    while (1) {
        open my $in, '<', $ErrLogFile or return undef;

        if (!$CheckAccumErrLog && $ErrLogFilePos > 0) {
            seek $in, $ErrLogFilePos, 0;
        }

        $lines = [<$in>];
        $end = tell($in);
        close $in;

        # a line caught half written is waited for too
        my $partial = @$lines && $lines->[-1] !~ /\n\z/;
        last if !$partial && (!$want || $want->($lines));
        last if time > $deadline;
        sleep 0.02;
    }

    if (!$CheckAccumErrLog) {
        $ErrLogFilePos = $end;
    }

    return $lines;
}

sub access_log_data (;$) {
    my $want = shift;

    sleep $TestNginxSleep * 3;

    my $deadline = time + $LogWait;
    my $lines;

    while (1) {
        open my $in, '<', $AccLogFile or return undef;
        $lines = [<$in>];
        close $in;

        my $partial = @$lines && $lines->[-1] !~ /\n\z/;
        last if !$partial && (!$want || $want->($lines));
        last if time > $deadline;
        sleep 0.02;
    }

    return $lines;
}


# Mock backend: one connection per repetition, then close.

sub start_tcp_server ($$) {
    my ($block, $rand_ports) = @_;

    my $name = $block->name;
    my $target = expand_env_in_text($block->tcp_listen, $name, $rand_ports);

    my $reply = $block->tcp_reply;
    if (!defined $reply && !defined $block->tcp_shutdown) {
        bail_out("$name - no --- tcp_reply specified but --- tcp_listen "
                 . "is specified");
    }

    my $req_len = $block->tcp_query_len;
    my $query_file;
    if (defined $block->tcp_query || defined $req_len) {
        $req_len //= length($block->tcp_query);
        $query_file = File::Temp::tmpnam();
    }

    my ($sock, $err);
    for my $try (1 .. 30) {
        if ($target =~ /^\d+$/) {
            $sock = IO::Socket::INET->new(
                LocalHost => '127.0.0.1',
                LocalPort => $target,
                Proto     => 'tcp',
                Reuse     => 1,
                Listen    => 5,
            );

        } elsif ($target =~ m{\S+\.sock$}) {
            unlink $target if -e $target;
            $sock = IO::Socket::UNIX->new(
                Local  => $target,
                Type   => SOCK_STREAM,
                Listen => 5,
            );

        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }

        last if $sock;

        $err = $!;
        last if $err !~ /address already in use/i;
        warn "WARNING: $name - tcp_listen $target: $err\n";
        sleep 0.1 * $try;
    }

    if (!$sock) {
        bail_out("$name - failed to create the tcp listening socket "
                 . "$target: $err");
    }

    my $pid = fork();
    if (!defined $pid) {
        bail_out("$name - fork() failed: $!");
    }

    if ($pid == 0) {
        _child_setup();
        _set_pdeathsig(SIGKILL);
        alarm $MockLife;
        eval {
            _serve_tcp($block, $sock, $reply, $req_len, $query_file);
        };
        warn "$name - TCP server: $@" if $@;
        POSIX::_exit(0);
    }

    $TcpServerPid = $pid;
    return ($sock, $query_file);
}

sub _serve_tcp {
    my ($block, $sock, $reply, $req_len, $query_file) = @_;

    my $name = $block->name;
    my $client;

    for (1 .. 1000) {
        $client = $sock->accept();
        last if $client;
        sleep $TestNginxSleep;
    }
    die "failed to accept: $!\n" if !$client;

    my ($no_read, $no_write);
    if (defined $block->tcp_shutdown) {
        my $how = $block->tcp_shutdown;
        sleep $block->tcp_shutdown_delay if $block->tcp_shutdown_delay;
        $client->shutdown($how);
        if ($how == 0 || $how == 2) {
            $no_read = 1;
        } else {
            $no_write = 1;
        }
    }

    my $buf = '';

    if (!$no_read) {
        my $auto = $block->tcp_query_auto_timeout;
        my $wait = 0.1;
        my $select = IO::Select->new($client);

        if (defined $auto) {
            $client->blocking(0);
            $wait = $auto + 0 if $auto ne '';
        }

        while (1) {
            if (defined $auto && !$select->can_read($wait)) {
                last;
            }

            my $b;
            my $ret = $client->recv($b, 4096);
            if (!defined $ret) {
                die "failed to receive: $!\n";
            }

            $buf .= $b;

            if ($query_file) {
                my $tmp = "$query_file.tmp";
                open my $out, '>', $tmp or die "cannot open $tmp: $!\n";
                print $out $buf;
                close $out;
                rename $tmp, $query_file or die "cannot rename $tmp: $!\n";
            }

            # The real runner reads once unless a query length is known.
            if (!defined $auto && (!$req_len || length($buf) >= $req_len)) {
                last;
            }

            last if $b eq '' && !defined $auto;
        }
    }

    my $delay = parse_time($block->tcp_reply_delay);
    sleep $delay if $delay;

    if (!$no_write && defined $reply) {
        if (ref $reply eq 'CODE') {
            $reply = $reply->($buf);
        }

        if (ref $reply) {
            if (ref $reply ne 'ARRAY') {
                die "bad --- tcp_reply value\n";
            }
            for my $r (@$reply) {
                defined $client->send($r)
                    or warn "WARNING: tcp server failed to send: $!\n";
            }

        } else {
            defined $client->send($reply)
                or warn "WARNING: tcp server failed to send: $!\n";
        }
    }

    if (defined $block->tcp_no_close) {
        sleep 1 for 1 .. $MockLife;
    }

    $client->close();
    $sock->close();
}

sub stop_tcp_server ($$) {
    my ($name, $sock) = @_;

    if (defined $TcpServerPid) {
        kill_child($TcpServerPid, $name);
        undef $TcpServerPid;
    }

    $sock->close() if $sock;
}

sub run_tcp_server_tests ($$$) {
    my ($block, $tcp_socket, $query_file) = @_;

    my $name = $block->name;

    return if !defined $tcp_socket;

    my $buf = '';
    if ($query_file) {
        $buf = read_file_text($query_file);
        unlink $query_file;
    }

    if (defined $block->tcp_query) {
        is_str($buf, $block->tcp_query, "$name - tcp_query ok");
    }

    if (defined $block->tcp_query_len) {
        Test::More::is(length($buf), $block->tcp_query_len,
                       "$name - TCP query length ok");
    }
}


# The block loop

# Sections of the real runner that this one does not implement: a block
# using one fails instead of passing without the check.
our @Unsupported = qw(
    http09 http2 http3 no_http2 curl curl_protocol curl_options curl_error
    stap stap_out stap_out_like stap_out_unlike udp_listen udp_reply
    udp_reply_delay udp_query reload_fails shutdown_error_log
    no_shutdown_error_log
);

our %Known = map { $_ => 1 } @Unsupported, qw(
    ONLY SKIP LAST
    config http_config main_config post_main_config server_name init
    post_setup_server_root user_files log_level error_log_file
    request request_eval pipelined_requests raw_request
    raw_request_middle_delay more_headers shutdown timeout abort wait
    ignore_response server_addr_for_client
    error_code error_code_like response_body response_body_eval
    response_body_like response_body_unlike response_body_filters
    response_body_json_sort charset write_resp_body_file
    response_headers response_headers_like raw_response_headers_like
    raw_response_headers_unlike
    error_log no_error_log grep_error_log grep_error_log_out
    access_log no_access_log
    tcp_listen tcp_reply tcp_reply_delay tcp_query tcp_query_len
    tcp_query_auto_timeout tcp_no_close tcp_shutdown tcp_shutdown_delay
    must_die skip_nginx skip_nginx2 skip_eval skip_openssl skip_slave
    todo todo_nginx no_check_leak suppress_stderr no_mockeagain
    quic_max_idle_timeout
);

sub run_tests () {
    srand($$ + Time::HiRes::time() * 1000000);

    $NginxVersion = get_nginx_version();

    if (!defined $ENV{TEST_NGINX_SERVER_PORT}) {
        $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    }

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks if !$NoShuffle;

    for my $block (@blocks) {
        for my $hdl (@BlockPreprocessors) {
            $hdl->($block);
        }

        $block->set_value("name", $0 . " " . $block->name);
        run_test($block);
        cleanup_test($block);
    }

    cleanup();
}

sub _check_sections ($) {
    my $block = shift;
    my $name = $block->name;

    for my $sec (@{ $block->{_section_order}[0] || [] }) {
        if (!$Known{$sec}) {
            warn "WARNING: $name - unknown section --- $sec (ignored, as "
                 . "the real runner does)\n";
            next;
        }

        if (grep { $_ eq $sec } @Unsupported) {
            Test::More::fail("$name - section --- $sec is not supported "
                             . "by the t/lib runner; use the real "
                             . "Test::Nginx");
        }
    }
}

sub _skip_spec ($$) {
    my ($block, $name) = @_;

    my ($n, $should_skip, $reason);

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my $code = $2;
            $n = $1;
            $reason = 'skip_eval';
            $should_skip = eval $code;
            if ($@) {
                bail_out("$name - skip_eval - failed to eval the Perl code "
                         . "\"$code\": $@");
            }
        }
    }

    if (defined(my $spec = $block->skip_nginx)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                      (?:\s*:\s*(.*))?\s*$/x)
        {
            $n = $1;
            my ($op, $ver) = ($2, get_canon_version($3, $4, $5));
            $reason = $6 || "nginx version $op $3.$4.$5";
            $should_skip = 1 if eval "$NginxVersion $op $ver";

        } else {
            bail_out("$name - Invalid --- skip_nginx spec: $spec");
        }

    } elsif (defined(my $spec2 = $block->skip_nginx2)) {
        if ($spec2 =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                       \s*(or|and)\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                       (?:\s*:\s*(.*))?\s*$/x)
        {
            $n = $1;
            my ($opa, $va) = ($2, get_canon_version($3, $4, $5));
            my ($opx, $opb, $vb) = ($6, $7, get_canon_version($8, $9, $10));
            $reason = $11;
            my $ra = eval "$NginxVersion $opa $va";
            my $rb = eval "$NginxVersion $opb $vb";
            $should_skip = 1 if $opx eq 'or' ? ($ra || $rb) : ($ra && $rb);

        } else {
            bail_out("$name - Invalid --- skip_nginx2 spec: $spec2");
        }
    }

    if (defined(my $spec = $block->skip_openssl)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)([a-z])?
                      (?:\s*:\s*(.*))?\s*$/x)
        {
            $n = $1;
            my $op = $2;
            my $ver = get_canon_version($3, $4, $5);
            $ver .= sprintf("%03d", ord($6) - ord('a')) if $6;
            $reason = $7 || (defined $OpenSSLVersion
                             ? "OpenSSL version $op $3.$4.$5"
                             : "Not built with OpenSSL");
            if (!defined $OpenSSLVersion
                || eval "$OpenSSLVersion $op $ver")
            {
                $should_skip = 1;
            }

        } else {
            bail_out("$name - Invalid --- skip_openssl spec: $spec");
        }
    }

    my ($should_todo, $todo_reason);

    if (defined(my $spec = $block->todo_nginx)) {
        if ($spec =~ /^\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/)
        {
            my ($op, $ver) = ($1, get_canon_version($2, $3, $4));
            $todo_reason = $5;
            $should_todo = 1 if eval "$NginxVersion $op $ver";

        } else {
            bail_out("$name - Invalid --- todo_nginx spec: $spec");
        }
    }

    if (defined(my $spec = $block->todo)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $should_todo = 1;
            $n = $1;
            $todo_reason = $2;

        } else {
            bail_out("$name - Invalid --- todo spec: $spec");
        }
    }

    return ($n, $should_skip, $reason || 'various reasons', $should_todo,
            $todo_reason || 'various reasons');
}

sub run_test ($) {
    my $block = shift;

    return if defined $block->SKIP;

    my $name = $block->name;

    _check_sections($block);

    my $rand_ports = {};
    $RandPorts = $rand_ports;

    my $config = expand_env_in_text($block->config, $name, $rand_ports);

    local $LogLevel = $LogLevel;
    $LogLevel = $block->log_level if $block->log_level;

    my ($tests_to_skip, $should_skip, $skip_reason, $should_todo,
        $todo_reason) = _skip_spec($block, $name);

    my $dry_run = 0;

    if (defined $block->must_die) {
        run_must_die($block, $config, $rand_ports);
        return;
    }

    if (!defined $config) {
        if (!defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one.");
        }

        if (!$should_skip && defined(my $st = nginx_exited())) {
            warn "WARNING: $name - nginx exited on ", _describe_status($st),
                 " before this block\n";
        }

        if (!$should_skip && !defined $NginxPid) {
            Test::More::fail("$name - no nginx is running for this block "
                             . "(it has no --- config and the previous "
                             . "nginx is gone)");
            $dry_run = "nginx not running";
        }

    } elsif (!$should_skip) {
        $PrevConfig = $config;

        stop_nginx($name);
        setup_server_root(0);
        run_customer_init_script($block);
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);

        my ($ok, $why) = start_nginx($name);

        if (!$ok) {
            Test::More::fail("$name - nginx failed to start");
            Test::More::diag(nginx_start_failure($name, $why));
            $dry_run = "nginx failed to start";
        }
    }

    if ($block->init) {
        eval $block->init;
        if ($@) {
            bail_out("$name - init failed: $@");
        }
    }

    my $i = 0;
    $ErrLogFilePos = 0;

    while ($i++ < $RepeatEach) {
        my ($tcp_socket, $query_file);

        if (defined $block->tcp_listen && !$should_skip) {
            ($tcp_socket, $query_file) = start_tcp_server($block,
                                                         $rand_ports);
        }

        if ($i > 1) {
            write_user_files($block, $rand_ports);
        }

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }

        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason",
                                      $tests_to_skip // 1);
            }

        } else {
            $RunTestHelper->($block, $dry_run, $i - 1);

            # end the mock before reading what it got, as the real one
            stop_tcp_server($name, undef);
            run_tcp_server_tests($block, $tcp_socket, $query_file);
        }

        stop_tcp_server($name, $tcp_socket);
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $total) {
            print $out "\n=== $name\n", read_file_text($ErrLogFile);
            close $out;
        }
    }

    # and every log a block wrote, for the secrets check of run-suite.sh
    if (my $dir = $ENV{AIGW_SECRETS_DIR}) {
        for my $log (glob "$LogDir/*.log") {
            next if $log eq $ErrLogFile || !-s $log;
            open my $out, '>>', "$dir/logs.$$" or last;
            print $out "=== $name: $log\n", read_file_text($log);
            close $out;
        }
    }
}

# nginx must refuse to start: one status check (and the error-log
# checks) per repetition.
sub run_must_die ($$$) {
    my ($block, $config, $rand_ports) = @_;

    my $name = $block->name;
    my $must_die = $block->must_die;

    $PrevConfig = $config;

    stop_nginx($name);
    setup_server_root(0);
    run_customer_init_script($block);
    write_user_files($block, $rand_ports);
    write_config_file($block, $config // '', $rand_ports);

    $ErrLogFilePos = 0;

    for my $i (0 .. $RepeatEach - 1) {
        my ($ok, $why, $status) = start_nginx($name);

        if ($ok) {
            Test::More::isnt(0, 0, "$name - die as expected");
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $i)\n";

        } elsif ($status == -1 || ($status & 127)) {
            Test::More::fail("$name - nginx failed to execute or crashed "
                             . "($why)");

        } elsif ($must_die =~ /^\d+$/) {
            Test::More::is($must_die, $status >> 8,
                           "$name - die with the expected exit code");

        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, 0, $i, 0);

        stop_nginx($name);
    }
}

1;
