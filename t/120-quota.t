# Rate limits, token quotas and spend budgets in the shared zone: refused
# before any provider call, with the headers and the error of the client's
# format; reservations settled to what was metered, also when the client
# goes away; exact under concurrency across four workers; kept across a
# reload.  Plain Test::More: it needs a master process, concurrent clients
# and a reload.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

my @keys = (
    { id => 'k_rpm', tenant => 'acme', limits => { rpm => 3 } },
    { id => 'k_tpm', tenant => 'acme', limits => { tpm => 2000 } },
    { id => 'k_budget', tenant => 'acme',
      budget => { usd => 0.001, period => 'day' } },
    { id => 'k_conc', tenant => 'acme', limits => { concurrency => 1 } },
    { id => 'k_burst', tenant => 'burst', limits => { rpm => 50 } },
    { id => 'k_reload', tenant => 'acme', limits => { rpd => 2 } },
    { id => 'k_claude', tenant => 'acme', limits => { rpm => 1 } },
    { id => 'k_team', tenant => 'teamco', team => 'red' },
    { id => 'k_free', tenant => 'acme' },
    { id => 'k_admin', tenant => 'ops', admin => JSON::PP::true },
);

for my $k (@keys) {
    $k->{hash} = sha256_hex("sk-$k->{id}");
}

$ngx->write_file('conf/keys.json', JSON::PP->new->encode({ keys => \@keys }));

$ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 4;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 1024; }
http {
    client_body_temp_path $dir/body;
    log_format q '\$aigw_key_id \$status \$aigw_quota';
    access_log $dir/logs/quota.log q;
    aigw_keys keys.json;
    aigw_quota_zone quota:1m;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider slow http://127.0.0.1:$mock/fault/delay=1500/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model m ok:gpt-4o input=2.50 output=10.00;
    aigw_model slow slow:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_limit team rpm=2;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location /free/v1/ {
            aigw_quota off;
            aigw_pass;
        }
        location = /usage {
            aigw_usage;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub chat {
    my ($id, %o) = @_;
    my $body = sprintf '{"model":"%s",%s"messages":'
                       . '[{"role":"user","content":"hi"}]}',
                       $o{model} || 'm',
                       defined $o{max_tokens}
                       ? qq{"max_tokens":$o{max_tokens},} : '';
    return $ngx->request('POST', $o{path} || '/v1/chat/completions',
                         { Authorization => "Bearer sk-$id" }, $body);
}

sub hdr {
    my ($res, $name) = @_;
    my ($v) = $res->{headers} =~ /^\Q$name\E:\s*(.*?)\r?$/mi;
    return $v;
}

# requests per minute, with OpenAI's headers and error

my @r = map { chat('k_rpm') } 1 .. 4;

is_deeply([map { $_->{status} } @r], [200, 200, 200, 429],
          'rpm=3: three pass, the fourth is refused');
is(hdr($r[0], 'x-ratelimit-limit-requests'), '3', 'limit header');
is(hdr($r[0], 'x-ratelimit-remaining-requests'), '2', 'remaining header');
is(hdr($r[2], 'x-ratelimit-remaining-requests'), '0', 'none left');
like(hdr($r[0], 'x-ratelimit-reset-requests') // '', qr/^\d+s$/,
     'reset header');
isnt(hdr($r[0], 'x-ratelimit-limit-requests'), '10000',
     'the provider\'s own limit headers are replaced');
like(hdr($r[3], 'retry-after') // '', qr/^[1-9]\d*$/, 'Retry-After');
is(hdr($r[3], 'x-ratelimit-remaining-requests'), '0',
   'the refusal carries the headers too');
like($r[3]{body},
     qr/^\{"error":\{"message":"Rate limit reached for key `k_rpm` on requests per minute\. Try again in \d+s\.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"\}\}$/,
     'OpenAI\'s error shape');

# Anthropic's shape and headers

my $m = '{"model":"haiku","max_tokens":16,'
        . '"messages":[{"role":"user","content":"hi"}]}';
my @a = map {
    $ngx->request('POST', '/v1/messages',
                  { 'x-api-key' => 'sk-k_claude' }, $m)
} 1 .. 2;

is($a[0]{status}, 200, 'anthropic: first passes');
is(hdr($a[0], 'anthropic-ratelimit-requests-limit'), '1',
   'anthropic-ratelimit-requests-limit');
is(hdr($a[0], 'x-ratelimit-limit-requests'), undef,
   'no OpenAI header on /v1/messages');
is($a[1]{status}, 429, 'anthropic: second refused');
like($a[1]{body},
     qr/^\{"type":"error","error":\{"type":"rate_limit_error","message":"Rate limit reached/,
     'Anthropic\'s error shape');

# tokens: a reservation of the prompt and max_tokens, settled to usage

my $t1 = chat('k_tpm', max_tokens => 1000);
is($t1->{status}, 200, 'tpm: a request within the limit');
is(hdr($t1, 'x-ratelimit-limit-tokens'), '2000', 'tokens limit header');

my $used = do {
    my $u = JSON::PP->new->decode($t1->{body})->{usage};
    $u->{prompt_tokens} + $u->{completion_tokens};
};

# the first request holds its usage now, not its reservation of 1000+

my $t2 = chat('k_tpm', max_tokens => 1000);
is($t2->{status}, 200, 'tpm: a second one fits once the first settled');
my $est = 1 + 1000;    # "hi" and "user" and the model: ~1-2 tokens
cmp_ok(hdr($t2, 'x-ratelimit-remaining-tokens'), '>=',
       2000 - $used - $est - 2, 'the first counts what it used');

my $t3 = chat('k_tpm', max_tokens => 5000);
is($t3->{status}, 429, 'tpm: a request larger than the limit');
like($t3->{body}, qr/Request too large for key `k_tpm`/,
     'said to be too large');
is(hdr($t3, 'retry-after'), undef, 'no Retry-After: it never fits');

# a spend budget: the first request may cost more than what is left

my $b1 = chat('k_budget', max_tokens => 20);
is($b1->{status}, 200, 'budget: the first request');
my $b2 = chat('k_budget', max_tokens => 200);
is($b2->{status}, 429, 'budget: refused once spent');
like($b2->{body}, qr/"code":"insufficient_quota"/, 'insufficient_quota');
like(hdr($b2, 'retry-after') // '', qr/^\d+$/,
     'Retry-After: the end of the day');

# team limits by directive

my @t = map { chat('k_team')->{status} } 1 .. 3;
is_deeply(\@t, [200, 200, 429], 'aigw_limit team rpm=2');

# aigw_quota off

is(chat('k_rpm', path => '/free/v1/chat/completions')->{status}, 200,
   'aigw_quota off: not limited');

# requests in flight: released when the client goes away

sub send_only {
    my ($id) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
        or die "connect: $!";
    my $body = '{"model":"slow","messages":[{"role":"user","content":"hi"}]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer sk-$id\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

my $s = send_only('k_conc');
sleep 0.3;
is(chat('k_conc')->{status}, 429, 'concurrency=1: a second in flight');
close $s;

my $ok = 0;
for (1 .. 50) {
    sleep 0.1;
    my $st = chat('k_conc')->{status};
    if ($st == 200) { $ok = 1; last }
}
ok($ok, 'the client that went away holds nothing');

# exact under concurrency: 200 requests, 20 at a time, 4 workers, rpm=50

my @kids;
pipe(my $rd, my $wr) or die;
for my $c (1 .. 20) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my @st = map { chat('k_burst')->{status} } 1 .. 10;
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
is(scalar(grep { $_ == 200 } @all), 50, 'burst: exactly 50 admitted');
is(scalar(grep { $_ != 200 && $_ != 429 } @all), 0,
   'burst: the rest refused, nothing else');

# a reload keeps what was used

is(chat('k_reload')->{status}, 200, 'rpd=2: first');
is(chat('k_reload')->{status}, 200, 'rpd=2: second');
$ngx->signal('HUP');
sleep 1;
is(chat('k_reload')->{status}, 429, 'rpd=2: refused after a reload');

# aigw_usage: a key reads its own usage, an admin key anyone's

sub usage {
    my ($id, $query) = @_;
    return $ngx->request('GET', '/usage' . ($query // ''),
                         $id ? { Authorization => "Bearer sk-$id" } : {},
                         undef);
}

my $u = usage('k_rpm');
is($u->{status}, 200, 'usage: its own');
my $j = eval { JSON::PP->new->decode($u->{body}) } || {};
is($j->{scope}, 'key', 'usage: scope');
is($j->{id}, 'k_rpm', 'usage: id');
is($j->{used}{requests_minute}, 3, 'usage: requests this minute');
is($j->{limits}{rpm}, 3, 'usage: the limit');
is($j->{remaining}{requests_minute}, 0, 'usage: none left');
is($j->{limits}{tpm}, undef, 'usage: no tpm limit is null');

$j = eval { JSON::PP->new->decode(usage('k_budget')->{body}) } || {};
is($j->{limits}{budget_usd}, '0.001000', 'usage: a budget');
is($j->{limits}{budget_period}, 'day', 'usage: its period');
ok($j->{used}{spend_usd}{day} > 0, 'usage: what was spent');

is(usage('k_rpm', '?key=k_tpm')->{status}, 403,
   'usage: not another key\'s');
is(usage('k_rpm', '?tenant=acme')->{status}, 403,
   'usage: not a tenant\'s');
is(usage(undef)->{status}, 401, 'usage: not without a key');

$u = usage('k_admin', '?key=k_rpm');
is($u->{status}, 200, 'usage: an admin reads any key');
like($u->{body}, qr/"requests_minute":3/, 'usage: the same numbers');

$j = eval { JSON::PP->new->decode(usage('k_admin', '?team=red')->{body}) }
     || {};
is($j->{limits}{rpm}, 2, 'usage: a team\'s limit by directive');
is($j->{used}{requests_minute}, 2, 'usage: a team\'s use');

is($ngx->request('POST', '/usage', { Authorization => 'Bearer sk-k_admin' },
                 '{}')->{status}, 405, 'usage: GET only');

# the metrics count the decisions

my $mt = $ngx->request('GET', '/metrics', {}, undef)->{body};
like($mt, qr/^aigw_quota_decisions_total\{decision="admitted"\} [1-9]\d*$/m,
     'metrics: admissions');
like($mt, qr/^aigw_quota_decisions_total\{decision="refused",scope="key",limit="rpm"\} \d+$/m,
     'metrics: refusals by scope and limit');
like($mt, qr/^aigw_quota_decisions_total\{decision="refused",scope="key",limit="budget"\} 1$/m,
     'metrics: a budget refusal');
like($mt, qr/^aigw_quota_decisions_total\{decision="refused",scope="team",limit="rpm"\} 1$/m,
     'metrics: a team refusal');

# the log

# nginx writes a line once the connection is done with
my $log = '';
for (1 .. 50) {
    open my $l, '<', "$dir/logs/quota.log" or die $!;
    $log = do { local $/; <$l> };
    last if $log =~ /^k_budget 429 /m && $log =~ /^k_reload 429 /m;
    sleep 0.1;
}
like($log, qr/^k_rpm 200 admitted$/m, '$aigw_quota: admitted');
like($log, qr/^k_rpm 429 refused:key:rpm$/m, '$aigw_quota: refused');
like($log, qr/^k_budget 429 refused:key:budget$/m,
     '$aigw_quota: budget');

open my $e, '<', "$dir/logs/error.log" or die $!;
my $err = do { local $/; <$e> };
like($err, qr/aigw: rpm of key "k_rpm" reached, request refused/,
     'a refusal is logged');
unlike($err, qr/\[(alert|crit|emerg)\]/, 'nothing worse in the log');

done_testing;
