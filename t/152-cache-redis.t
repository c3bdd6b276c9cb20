# The cache's Redis second tier (aigw_cache_redis): an answer stored by
# one nginx is a hit on another sharing the Redis, and fills its zone;
# Redis hung (SIGSTOP): the request goes on to the provider after the
# timeout; Redis down: at once; one error-log line, not one a request;
# Redis back: entries are shared again.  Plain Test::More: a real
# redis-server and two nginx.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwFixture;

use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);

my @ngx = suite_nginx(2);
my $module = $ngx[0]->module;
my $mock = mock_port();
my $redis = suite_redis();
my $rport = $redis->port;

# the directive without aigw_redis is refused by nginx -t

{
    my $n = AigwNginx->new;
    my $dir = $n->dir;
    $n->write_conf("load_module $module;\n"
                   . "error_log $dir/logs/error.log;\n"
                   . "events { worker_connections 16; }\n"
                   . "http {\n    aigw_cache_zone c:1m;\n"
                   . "    aigw_provider p http://127.0.0.1:1/v1;\n"
                   . "    server { listen 127.0.0.1:1;\n"
                   . "        location / { aigw_cache on;"
                   . " aigw_cache_redis on; aigw_pass; } }\n}\n");
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $out = `$bin -p $dir -c $dir/conf/nginx.conf -t 2>&1`;
    ok($? != 0, 'aigw_cache_redis without aigw_redis is refused');
    like($out, qr/"aigw_cache_redis" needs "aigw_redis" in the http block/,
         'and says why');
}

for my $n (@ngx) {
    $n->write_keys({ id => 'k_cache_r', tenant => 'acme',
                     key => 'sk-k_cache_r' });

    $n->write_http(<<"EOC");
    aigw_keys keys.json;
    aigw_redis 127.0.0.1:$rport timeout=300ms;
    aigw_cache_zone cache:1m;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model m ok:gpt-4o;
    server {
        listen 127.0.0.1:@{[ $n->port ]};
        location /v1/ {
            aigw_cache on;
            aigw_cache_redis on;
            aigw_pass;
        }
        location /local/v1/ {
            aigw_cache on;
            aigw_pass;
        }
    }
EOC

    ok($n->start, 'nginx starts') or BAIL_OUT($n->start_error);
}

sub body {
    my ($text, $extra) = @_;
    return '{"model":"m",' . ($extra // '')
           . '"messages":[{"role":"user","content":"' . $text . '"}]}';
}

sub ask {
    my ($n, $body, $path) = @_;
    my $t = time;
    my $r = $n->request('POST', $path // '/v1/chat/completions',
                        { Authorization => 'Bearer sk-k_cache_r',
                          'Content-Type' => 'application/json' }, $body);
    $r->{took} = time - $t;
    ($r->{cache}) = $r->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    $r->{cache} //= '';
    return $r;
}

sub content {
    my ($r) = @_;
    my $j = eval { decode_json($r->{body}) } or return '';
    return $j->{choices}[0]{message}{content} // '';
}

# the entries in Redis, once there are n (a store is not waited for)
sub entries {
    my ($n) = @_;
    my @k;

    for (1 .. 100) {
        my $reply = $redis->cmd('KEYS', 'aigw:cache:*');
        @k = $reply =~ /^(aigw:cache:[0-9a-f]{64})\r?$/mg;
        last if @k >= $n;
        sleep 0.05;
    }

    return scalar @k;
}

sub errors {
    my ($n) = @_;
    open my $fh, '<', $n->dir . '/logs/error.log' or return 0;
    return scalar grep { /aigw cache: Redis/ } <$fh>;
}

# stored by one, a hit on the other

my $a1 = ask($ngx[0], body('shared between nodes'));
is($a1->{status}, 200, 'node A: 200');
is($a1->{cache}, 'MISS', 'node A: a miss');
is(entries(1), 1, 'the answer is in Redis');

my $b1 = ask($ngx[1], body('shared between nodes'));
is($b1->{status}, 200, 'node B: 200');
is($b1->{cache}, 'HIT', 'node B: a hit from Redis');
ok(content($b1) ne '' && content($b1) eq content($a1),
   'with the answer node A stored');
like($b1->{headers}, qr/^Age: \d+\r?$/mi, 'and an Age');

my $b2 = ask($ngx[1], body('shared between nodes'));
is($b2->{cache}, 'HIT', 'node B again: a hit');

# the hit filled B's zone: B's location without Redis, same zone, hits
my $b3 = ask($ngx[1], body('shared between nodes'),
             '/local/v1/chat/completions');
is($b3->{cache}, 'HIT', "the Redis hit filled node B's zone");

# a stream asked of a stored JSON answer is replayed as a stream
my $b4 = ask($ngx[1], body('shared between nodes', '"stream":true,'));
is($b4->{cache}, 'HIT', 'a stream from the JSON entry: a hit');
like($b4->{body}, qr/data: \[DONE\]/, 'replayed as a stream');

# another tenant's scope is another key: never in Redis under this one
my $keys = entries(1);
is($keys, 1, 'one entry still');

# Redis hung: the request goes on after the timeout

$redis->pause;

my @hung = map { ask($ngx[0], body("while Redis hangs $_")) } 1 .. 3;
is(scalar(grep { $_->{status} == 200 } @hung), 3,
   'Redis hung: every request answered');
is(scalar(grep { $_->{cache} eq 'MISS' } @hung), 3, 'as misses');
ok($hung[0]{took} >= 0.25, 'after the timeout (' . $hung[0]{took} . ' s)');
ok((grep { $_->{took} < 3 } @hung) == 3, 'not much later');

$redis->resume;

# Redis down: at once

$redis->stop;

my @down = map { ask($ngx[1], body("while Redis is down $_")) } 1 .. 3;
is(scalar(grep { $_->{status} == 200 && $_->{cache} eq 'MISS' } @down), 3,
   'Redis down: every request a 200 miss');

# one error line, not one a request
my $e = errors($ngx[1]);
ok($e >= 1 && $e <= 2, "Redis down: $e error line(s) for 3 requests");
$e = errors($ngx[0]);
ok($e >= 1 && $e <= 2, "Redis hung: $e error line(s) for 3 requests");

# Redis back: shared again (a connection is tried again each second)

ok($redis->start, 'Redis starts again');

my $back;

for my $i (1 .. 20) {
    $back = ask($ngx[0], body("after the restart $i"));
    last if entries(1) >= 1 && $back->{cache} eq 'MISS'
            && ask($ngx[1], body("after the restart $i"))->{cache} eq 'HIT';
    undef $back;
    sleep 0.25;
}

ok($back, 'after a restart, an answer of A is a hit on B');

for my $n (@ngx) {
    $n->stop;
    open my $fh, '<', $n->dir . '/logs/error.log';
    my @bad = grep { /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error/ }
              <$fh>;
    is(scalar @bad, 0, 'no alert, crit or sanitizer line') or diag @bad;
}

done_testing;
