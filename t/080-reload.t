# "nginx -s reload" picks up a changed key file without dropping the
# requests in flight; a key file with an error is refused and the running
# keys stay.  Plain Test::More: it needs a master process and a reload in
# the middle of a request.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

sub write_keys {
    my (@entries) = @_;
    $ngx->write_file('conf/keys.json',
                     '{"keys":[' . join(',', @entries) . ']}');
}

sub entry {
    my ($id, $secret) = @_;
    return sprintf '{"id":"%s","hash":"%s","tenant":"t-%s"}',
                   $id, sha256_hex($secret), $id;
}

write_keys(entry('one', 'sk-aigw-one'));

$ngx->write_conf(<<"EOC");
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

$ENV{AIGW_TEST_KEY} = 'sk-provider';

ok($ngx->start, 'nginx starts') or diag $ngx->start_error;

sub request {
    my ($secret, $model, $stream) = @_;
    my $body = sprintf '{"model":"%s","stream":%s,"messages":'
                       . '[{"role":"user","content":"hi"}]}',
                       $model, $stream ? 'true' : 'false';
    return $ngx->request('POST', '/v1/chat/completions',
                         { Authorization => "Bearer $secret" }, $body);
}

sub status { return $_[0]{status} }

is(status(request('sk-aigw-one', 'm')), 200, 'key one works');
is(status(request('sk-aigw-two', 'm')), 401, 'key two is unknown');

# a stream in flight across the reload: 8 words, 250 ms apart
my $requests = mock_stats()->{requests};
my $tmp = "$dir/inflight.out";
my $child = fork // die;
if ($child == 0) {
    my $r = request('sk-aigw-one', 'slow', 1);
    open my $o, '>', $tmp or die;
    print $o "$r->{status}\n$r->{body}";
    close $o;
    POSIX::_exit(0);
}

# the stream has begun before the reload
my $begun = time + 5;
sleep 0.05 while time < $begun
                 && mock_stats()->{requests} < $requests + 1;

write_keys(entry('two', 'sk-aigw-two'));

my $old = $ngx->workers;
$ngx->signal('HUP');

# The old worker finishes the stream; what is asserted next holds once it
# no longer accepts connections and a new one serves: wait for that, not
# for a guess of how long it takes on a busy machine.
ok($ngx->reloaded($old, 30), 'the new workers took over')
    or diag explain $ngx->workers;

is(status(request('sk-aigw-two', 'm')), 200, 'after the reload key two works');
is(status(request('sk-aigw-one', 'm')), 401, 'and key one is gone');

waitpid($child, 0);
my $inflight = do { local $/; open my $i, '<', $tmp or die; <$i> };
like($inflight, qr/^200\n.*data: \[DONE\]\s*\z/s,
     'the stream in flight during the reload ended whole');

# a broken key file: the reload is refused, the keys stay
$ngx->write_file('conf/keys.json',
                 '{"keys":[{"id":"three","hash":"nothex","tenant":"t"}]}');

$ngx->signal('HUP');

my $logged = 0;
my $deadline = time + 5;
while (time < $deadline) {
    if ($ngx->error_log =~ /entry 1 \(id "three"\): field "hash" must be 64 hexadecimal/)
    {
        $logged = 1;
        last;
    }
    sleep 0.1;
}

ok($logged, 'the broken key file is reported with its entry and field');
is(status(request('sk-aigw-two', 'm')), 200, 'key two still works');
like(request('sk-aigw-two', 'm')->{headers}, qr/X-Tenant: t-two/,
     'with its tenant');

done_testing();
