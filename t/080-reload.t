# "nginx -s reload" picks up a changed key file without dropping the
# requests in flight; a key file with an error is refused and the running
# keys stay.  Plain Test::More: it needs a master process and a reload in
# the middle of a request.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($module) = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/logs";
mkdir "$dir/conf";

my $port = do {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die;
    $s->sockport;
};

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

sub write_keys {
    my (@entries) = @_;
    open my $fh, '>', "$dir/conf/keys.json" or die;
    print $fh '{"keys":[', join(',', @entries), ']}';
    close $fh;
}

sub entry {
    my ($id, $secret) = @_;
    return sprintf '{"id":"%s","hash":"%s","tenant":"t-%s"}',
                   $id, sha256_hex($secret), $id;
}

write_keys(entry('one', 'sk-aigw-one'));

open my $conf, '>', "$dir/conf/nginx.conf" or die;
print $conf <<"EOC";
load_module $module;
worker_processes 1;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
env AIGW_TEST_KEY;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    aigw_keys keys.json;
    aigw_provider ok http://127.0.0.1:$mock/v1 key_env=AIGW_TEST_KEY;
    aigw_provider slow http://127.0.0.1:$mock/fault/pace=250,words=8/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model m ok:gpt-4o;
    aigw_model slow slow:gpt-4o;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
            add_header X-Tenant \$aigw_tenant always;
        }
    }
}
EOC
close $conf;

$ENV{AIGW_TEST_KEY} = 'sk-provider';

my $out = `$nginx -p $dir -c conf/nginx.conf 2>&1`;
is($?, 0, 'nginx starts') or diag $out;

END {
    if (open my $p, '<', "$dir/logs/nginx.pid") {
        my $pid = <$p>;
        chomp $pid;
        kill 'QUIT', $pid if $pid;
        for (1 .. 50) { last unless kill 0, $pid; sleep 0.1 }
        kill 'KILL', $pid if kill 0, $pid;
    }
}

sub wait_up {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        return 1 if $s;
        sleep 0.1;
    }
    return 0;
}

ok(wait_up(), 'nginx listens');

sub request {
    my ($secret, $model, $stream) = @_;
    my $body = sprintf '{"model":"%s","stream":%s,"messages":'
                       . '[{"role":"user","content":"hi"}]}',
                       $model, $stream ? 'true' : 'false';
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 5) or return '';
    print $s "POST /v1/chat/completions HTTP/1.0\r\nHost: localhost\r\n"
             . "Authorization: Bearer $secret\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $res = <$s>;
    return $res // '';
}

sub status { my ($r) = @_; return $r =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0 }

is(status(request('sk-aigw-one', 'm')), 200, 'key one works');
is(status(request('sk-aigw-two', 'm')), 401, 'key two is unknown');

# a stream in flight across the reload: 8 words, 250 ms apart
my $tmp = "$dir/inflight.out";
my $child = fork // die;
if ($child == 0) {
    my $r = request('sk-aigw-one', 'slow', 1);
    open my $o, '>', $tmp or die;
    print $o $r;
    close $o;
    POSIX::_exit(0);
}

sleep 0.5;

write_keys(entry('two', 'sk-aigw-two'));

my $pid = do { open my $p, '<', "$dir/logs/nginx.pid" or die; <$p> };
chomp $pid;
kill 'HUP', $pid;

my $switched = 0;
my $deadline = time + 5;
while (time < $deadline) {
    if (status(request('sk-aigw-two', 'm')) == 200) {
        $switched = 1;
        last;
    }
    sleep 0.1;
}

ok($switched, 'after the reload key two works');
is(status(request('sk-aigw-one', 'm')), 401, 'and key one is gone');

waitpid($child, 0);
my $inflight = do { local $/; open my $i, '<', $tmp or die; <$i> };
like($inflight, qr/^HTTP\/1\.1 200 .*data: \[DONE\]\s*\z/s,
     'the stream in flight during the reload ended whole');

# a broken key file: the reload is refused, the keys stay
open my $bad, '>', "$dir/conf/keys.json" or die;
print $bad '{"keys":[{"id":"three","hash":"nothex","tenant":"t"}]}';
close $bad;

kill 'HUP', $pid;

my $logged = 0;
$deadline = time + 5;
while (time < $deadline) {
    my $log = do { local $/; open my $l, '<', "$dir/logs/error.log"; <$l> };
    if ($log =~ /entry 1 \(id "three"\): field "hash" must be 64 hexadecimal/)
    {
        $logged = 1;
        last;
    }
    sleep 0.1;
}

ok($logged, 'the broken key file is reported with its entry and field');
is(status(request('sk-aigw-two', 'm')), 200, 'key two still works');
like(request('sk-aigw-two', 'm'), qr/X-Tenant: t-two/,
     'with its tenant');

done_testing();
