# Quotas in Redis (aigw_quota_store redis), shared by two nginx nodes: a
# limit held exactly across both under concurrency, the same headers and
# refusals as the shared zone, settles, budgets and requests in flight;
# Redis down (fail_open at once, fail_closed with a 503), Redis hung
# (decided after the timeout), Redis back (limits hold again, and the
# spend of the outage, queued by the workers, is applied).  Plain
# Test::More: a real redis-server and two nginx with master processes.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;
use AigwRedis;

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);

my @ngx = (AigwNginx->new, AigwNginx->new);

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $ngx[0]->module;
plan skip_all => 'no /usr/bin/redis-server (Debian: redis-server)'
    unless AigwRedis::available();

# the directives, as "nginx -t" takes or refuses them

sub nginx_t {
    my ($http) = @_;
    my $n = AigwNginx->new;
    my $dir = $n->dir;
    $n->write_conf("load_module " . $n->module . ";\n"
                   . "error_log $dir/logs/error.log;\n"
                   . "events { worker_connections 16; }\n"
                   . "http {\n$http\n"
                   . "    aigw_provider p http://127.0.0.1:1/v1;\n"
                   . "    server { listen 127.0.0.1:1;\n"
                   . "        location / { aigw_pass; } }\n}\n");
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $out = `$bin -p $dir -c $dir/conf/nginx.conf -t 2>&1`;
    return ($? == 0, $out);
}

my ($tok, $tout) = nginx_t("aigw_redis 127.0.0.1;\n"
                           . "aigw_quota_store redis;\n"
                           . "aigw_quota_redis_down fail_closed;");
ok($tok, 'aigw_quota_store redis with aigw_redis') or diag $tout;

($tok, $tout) = nginx_t("aigw_quota_store zone;\n"
                        . "server { listen 127.0.0.1:2;\n"
                        . "    location / { aigw_quota_store redis;"
                        . " aigw_pass; } }");
ok(!$tok, 'aigw_quota_store redis without aigw_redis is refused');
like($tout, qr/"aigw_quota_store redis" needs "aigw_redis" in the http block/,
     'and says why');

($tok, $tout) = nginx_t("aigw_quota_store memcached;");
ok(!$tok, 'an unknown store is refused');
like($tout, qr/invalid value "memcached" in \S*nginx\.conf:5/,
     'with the file and the line');

($tok, $tout) = nginx_t("aigw_quota_redis_down maybe;");
like($tout, qr/invalid value "maybe" in \S*nginx\.conf:5/,
     'aigw_quota_redis_down: fail_open or fail_closed');

my $redis = AigwRedis->new or BAIL_OUT('redis-server does not start');
my $rport = $redis->port;
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $module = $ngx[0]->module;

my @keys = (
    { id => 'k_rpm', tenant => 'acme', limits => { rpm => 3 } },
    { id => 'k_tpm', tenant => 'acme', limits => { tpm => 2000 } },
    { id => 'k_budget', tenant => 'acme',
      budget => { usd => 0.001, period => 'day' } },
    { id => 'k_conc', tenant => 'acme', limits => { concurrency => 1 } },
    { id => 'k_burst', tenant => 'burst', limits => { rpm => 50 } },
    { id => 'k_claude', tenant => 'acme', limits => { rpm => 1 } },
    { id => 'k_down', tenant => 'acme', limits => { rpm => 1 } },
    { id => 'k_hung', tenant => 'acme', limits => { rpm => 1 } },
    { id => 'k_back', tenant => 'acme', limits => { rpm => 2 } },
    { id => 'k_resumed', tenant => 'acme', limits => { rpm => 1 } },
    { id => 'k_spend', tenant => 'acme',
      budget => { usd => 0.1, period => 'month' } },
);

for my $k (@keys) {
    $k->{hash} = sha256_hex("sk-$k->{id}");
}

for my $n (@ngx) {
    my $dir = $n->dir;
    my $port = $n->port;

    $n->write_file('conf/keys.json',
                   JSON::PP->new->encode({ keys => \@keys }));

    $n->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 1024; }
http {
    client_body_temp_path $dir/body;
    log_format q '\$aigw_key_id \$status \$aigw_quota';
    access_log $dir/logs/quota.log q;
    aigw_keys keys.json;
    aigw_redis 127.0.0.1:$rport timeout=200ms;
    aigw_quota_store redis;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider slow http://127.0.0.1:$mock/fault/delay=1500/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model m ok:gpt-4o input=2.50 output=10.00;
    aigw_model dear ok:gpt-4o input=1000 output=1000;
    aigw_model slow slow:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location /closed/v1/ {
            aigw_quota_redis_down fail_closed;
            aigw_pass;
        }
        location = /usage {
            aigw_usage;
        }
    }
}
EOC

    ok($n->start, 'nginx starts') or BAIL_OUT($n->start_error);
}

my $turn = 0;

# a request to one node or the other, in turn unless told
sub chat {
    my ($id, %o) = @_;
    my $body = sprintf '{"model":"%s",%s"messages":'
                       . '[{"role":"user","content":"hi"}]}',
                       $o{model} || 'm',
                       defined $o{max_tokens}
                       ? qq{"max_tokens":$o{max_tokens},} : '';
    my $n = $ngx[defined $o{node} ? $o{node} : $turn++ % 2];
    return $n->request('POST', $o{path} || '/v1/chat/completions',
                       { Authorization => "Bearer sk-$id" }, $body);
}

sub hdr {
    my ($res, $name) = @_;
    my ($v) = $res->{headers} =~ /^\Q$name\E:\s*(.*?)\r?$/mi;
    return $v;
}

sub timed {
    my ($code) = @_;
    my $t = time;
    my $res = $code->();
    return ($res, time - $t);
}

# requests per minute across both nodes, with OpenAI's headers and error

my @r = map { chat('k_rpm') } 1 .. 4;

is_deeply([map { $_->{status} } @r], [200, 200, 200, 429],
          'rpm=3 over two nodes: three pass, the fourth is refused');
is(hdr($r[0], 'x-ratelimit-limit-requests'), '3', 'limit header');
is(hdr($r[0], 'x-ratelimit-remaining-requests'), '2', 'remaining header');
is(hdr($r[1], 'x-ratelimit-remaining-requests'), '1',
   'remaining, told by the other node');
is(hdr($r[2], 'x-ratelimit-remaining-requests'), '0', 'none left');
like(hdr($r[0], 'x-ratelimit-reset-requests') // '', qr/^\d+s$/,
     'reset header');
like(hdr($r[3], 'retry-after') // '', qr/^[1-9]\d*$/, 'Retry-After');
is(hdr($r[3], 'x-ratelimit-remaining-requests'), '0',
   'the refusal carries the headers too');
like($r[3]{body},
     qr/^\{"error":\{"message":"Rate limit reached for key `k_rpm` on requests per minute\. Try again in \d+s\.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"\}\}$/,
     'OpenAI\'s error shape');

my $ttl = $redis->cmd('TTL', 'aigw:q:key:k_rpm') // '';
like($ttl, qr/^:[1-9]\d*\r\n$/, 'the counter is in Redis, and expires');

# Anthropic's shape and headers

my $m = '{"model":"haiku","max_tokens":16,'
        . '"messages":[{"role":"user","content":"hi"}]}';
my @a = map {
    $ngx[$_]->request('POST', '/v1/messages',
                      { 'x-api-key' => 'sk-k_claude' }, $m)
} 0 .. 1;

is($a[0]{status}, 200, 'anthropic: first passes');
is(hdr($a[0], 'anthropic-ratelimit-requests-limit'), '1',
   'anthropic-ratelimit-requests-limit');
like(hdr($a[0], 'anthropic-ratelimit-requests-reset') // '',
     qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'anthropic reset header');
is($a[1]{status}, 429, 'anthropic: second refused, on the other node');
like($a[1]{body},
     qr/^\{"type":"error","error":\{"type":"rate_limit_error","message":"Rate limit reached/,
     'Anthropic\'s error shape');

# tokens: a reservation of the prompt and max_tokens, settled to usage

my $t1 = chat('k_tpm', max_tokens => 1000, node => 0);
is($t1->{status}, 200, 'tpm: a request within the limit');
is(hdr($t1, 'x-ratelimit-limit-tokens'), '2000', 'tokens limit header');

my $used = do {
    my $u = JSON::PP->new->decode($t1->{body})->{usage};
    $u->{prompt_tokens} + $u->{completion_tokens};
};

# the settle is sent as the request ends; the next one is on the other
# node, and the settle has a few milliseconds to reach Redis first
sleep 0.1;

my $t2 = chat('k_tpm', max_tokens => 1000, node => 1);
is($t2->{status}, 200, 'tpm: a second one fits once the first settled');
my $est = 1 + 1000;
cmp_ok(hdr($t2, 'x-ratelimit-remaining-tokens'), '>=',
       2000 - $used - $est - 2, 'the first counts what it used');

my $t3 = chat('k_tpm', max_tokens => 5000);
is($t3->{status}, 429, 'tpm: a request larger than the limit');
like($t3->{body}, qr/Request too large for key `k_tpm`/,
     'said to be too large');
is(hdr($t3, 'retry-after'), undef, 'no Retry-After: it never fits');

# a spend budget

my $b1 = chat('k_budget', max_tokens => 20, node => 0);
is($b1->{status}, 200, 'budget: the first request');
my $b2 = chat('k_budget', max_tokens => 200, node => 1);
is($b2->{status}, 429, 'budget: refused once spent, on the other node');
like($b2->{body}, qr/"code":"insufficient_quota"/, 'insufficient_quota');
like(hdr($b2, 'retry-after') // '', qr/^\d+$/,
     'Retry-After: the end of the day');

# requests in flight: released when the client goes away

sub send_only {
    my ($n, $id) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $n->port)
        or die "connect: $!";
    my $body = '{"model":"slow","messages":[{"role":"user","content":"hi"}]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer sk-$id\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

my $s = send_only($ngx[0], 'k_conc');
sleep 0.3;
is(chat('k_conc', node => 1)->{status}, 429,
   'concurrency=1: a second in flight, on the other node');
close $s;

my $ok = 0;
for (1 .. 50) {
    sleep 0.1;
    my $st = chat('k_conc')->{status};
    if ($st == 200) { $ok = 1; last }
}
ok($ok, 'the client that went away holds nothing');

# exact under concurrency: 200 requests, 20 at a time, two nodes, rpm=50

my @kids;
pipe(my $rd, my $wr) or die;
for my $c (1 .. 20) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my @st = map { chat('k_burst', node => ($c + $_) % 2)->{status} }
                 1 .. 10;
        print $wr "@st\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my @all = map { split ' ' } <$rd>;
waitpid $_, 0 for @kids;

is(scalar @all, 200, 'burst: 200 answers');
is(scalar(grep { $_ == 200 } @all), 50,
   'burst: exactly 50 admitted over two nodes');
is(scalar(grep { $_ != 200 && $_ != 429 } @all), 0,
   'burst: the rest refused, nothing else');

# what a request of k_spend costs, with the dear model

my $sp = chat('k_spend', model => 'dear', max_tokens => 20, node => 0);
is($sp->{status}, 200, 'spend: a request before the outage');
my $cost = do {
    my $u = JSON::PP->new->decode($sp->{body})->{usage};
    ($u->{prompt_tokens} + $u->{completion_tokens}) * 1000;  # micro-$
};

# Redis down: fail_open at once, fail_closed with a 503

$redis->stop;

my ($res, $dt);
my @open;
for (1 .. 4) {
    ($res, $dt) = timed(sub { chat('k_down') });
    push @open, [$res->{status}, $dt];
}
is_deeply([map { $_->[0] } @open], [200, 200, 200, 200],
          'Redis down, fail_open: admitted past rpm=1');
cmp_ok((sort { $b <=> $a } map { $_->[1] } @open)[0], '<', 1,
       'Redis down: each decided in under a second');

($res, $dt) = timed(sub {
    chat('k_down', path => '/closed/v1/chat/completions')
});
is($res->{status}, 503, 'Redis down, fail_closed: 503');
cmp_ok($dt, '<', 1, 'fail_closed: at once');
is(hdr($res, 'retry-after'), '1', 'fail_closed: Retry-After: 1');
like($res->{body},
     qr/^\{"error":\{"message":"Quotas cannot be checked now\. Try again in 1s\.","type":"[a-z_]+","param":null,"code":"quota_unavailable"\}\}$/,
     'fail_closed: the client\'s JSON error');

# spend while Redis is down: enough to exhaust k_spend's budget

my $n = int(100000 / $cost) + 2;
my @spent = map {
    chat('k_spend', model => 'dear', max_tokens => 20)->{status}
} 1 .. $n;
is(scalar(grep { $_ == 200 } @spent), $n,
   "spend: $n requests admitted while Redis is down");

# Redis back, empty (it saves nothing): the queued spend is applied

$redis->start or BAIL_OUT('redis-server does not start again');

my $refused;
for (1 .. 40) {
    sleep 0.25;
    my $r = $redis->cmd('HGET', 'aigw:q:key:k_spend', 'b2') // '';
    my ($v) = $r =~ /^\$\d+\r\n(\d+)/;
    next unless defined $v && $v >= 100000;
    $refused = chat('k_spend', model => 'dear', max_tokens => 20);
    last;
}
ok($refused, 'the spend queued while Redis was down reaches Redis');
is($refused && $refused->{status}, 429,
   'spend: the budget is exhausted by the queued spend');
like($refused ? $refused->{body} : '', qr/"code":"insufficient_quota"/,
     'spend: insufficient_quota');

# Redis back: limits hold again (once the workers connect again)

sleep 1.2;
my @back = map { chat('k_back')->{status} } 1 .. 3;
is_deeply(\@back, [200, 200, 429], 'Redis back: rpm=2 holds again');

# Redis hung: each request decided after about the timeout (200ms)

$redis->pause;

my @hung;
for (1 .. 3) {
    ($res, $dt) = timed(sub { chat('k_hung', node => 0) });
    push @hung, [$res->{status}, $dt];
}
is_deeply([map { $_->[0] } @hung], [200, 200, 200],
          'Redis hung, fail_open: admitted past rpm=1');
cmp_ok((sort { $b <=> $a } map { $_->[1] } @hung)[0], '<', 1,
       'Redis hung: no request waits much longer than the timeout');
cmp_ok($hung[0][1], '>=', 0.15,
       'Redis hung: the first waited for the timeout');

($res, $dt) = timed(sub {
    chat('k_hung', node => 1, path => '/closed/v1/chat/completions')
});
is($res->{status}, 503, 'Redis hung, fail_closed: 503');
cmp_ok($dt, '<', 1, 'fail_closed: decided within the timeout');

# what was sent before the timeout runs now: a script Redis had not
# answered may still count (docs/quota.md says so)
$redis->resume;

sleep 1.2;
@back = map { chat('k_resumed')->{status} } 1 .. 2;
is_deeply(\@back, [200, 429], 'Redis resumed: rpm=1 holds again');

# the logs

for my $i (0, 1) {
    my $err = $ngx[$i]->error_log;
    like($err, qr/aigw quota: Redis .*\(further errors for 10s not logged\)/,
         "node $i: Redis's failures are logged");
    my $lines = () = $err =~ /aigw quota: Redis /g;
    cmp_ok($lines, '<=', 12, "node $i: not once a request ($lines lines)");
    unlike($err, qr/\[(alert|crit|emerg)\]/, "node $i: nothing worse");
}

# aigw_usage reads the zone: with the Redis store it says it cannot

my $u = $ngx[0]->request('GET', '/usage',
                         { Authorization => 'Bearer sk-k_tpm' }, undef);
is($u->{status}, 501, 'aigw_usage with the Redis store: 501');
like($u->{body}, qr/"code":"not_implemented"/, 'aigw_usage: says why');

done_testing;
