# Observability: the endpoint of every request in $aigw_endpoint and the
# metrics' "endpoint" label; extra labels from the key (user, team, a
# metadata tag) under the series cap; one request id end to end (the
# client's when sane, else one the gateway makes) at the provider, in the
# answer, errors included, in $aigw_request_id and the error log lines;
# the provider's own id in $aigw_provider_request_id; aigw_report's sums
# by any label, equal to the metrics.  Plain Test::More: two nginx
# instances, the access and error logs read back.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Time::HiRes qw(sleep);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

my @keys = (
    { id => 'k_alice', tenant => 'acme', user => 'alice', team => 'red',
      metadata => { cost_center => 'cc-1' } },
    { id => 'k_bob', tenant => 'acme', user => 'bob', team => 'blue',
      metadata => { cost_center => 'cc-2' } },
    { id => 'k_carol', tenant => 'globex', user => 'carol' },
    { id => 'k_lim', tenant => 'lim', user => 'dan', limits => { rpm => 1 } },
);

$_->{hash} = sha256_hex("sk-$_->{id}") for @keys;

my $keys_json = JSON::PP->new->encode({ keys => \@keys });

$ngx->write_file('conf/keys.json', $keys_json);

$ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 1;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    log_format obs escape=json
        '{"uri":"\$uri","status":"\$status","endpoint":"\$aigw_endpoint",'
        '"request_id":"\$aigw_request_id",'
        '"provider_request_id":"\$aigw_provider_request_id"}';
    access_log $dir/logs/obs.log obs;
    aigw_keys keys.json;
    aigw_quota_zone quota:1m;
    aigw_metrics_zone aigw:1m labels=user,team,meta:cost_center;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_provider down http://127.0.0.1:1/v1;
    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00;
    aigw_model haiku claude:claude-3-5-haiku input=1 output=5;
    aigw_model dead down:gpt-4o;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
        location = /report {
            allow 127.0.0.1;
            deny all;
            aigw_report;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub hdr {
    my ($res, $name) = @_;
    my @v = $res->{headers} =~ /^\Q$name\E:[ \t]*(.*?)\r?$/mgi;
    return wantarray ? @v : $v[0];
}

sub call {
    my ($path, $key, $body, %h) = @_;
    $h{Authorization} = "Bearer sk-$key" if $key;
    mock_reset();
    my $res = $ngx->request($body ? 'POST' : 'GET', $path, \%h, $body);
    $res->{mock} = mock_last();
    return $res;
}

sub access_log {
    sleep 0.2;
    open my $f, '<', "$dir/logs/obs.log" or return ();
    return map { decode_json($_) } <$f>;
}

my $chat = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}';
my %body = (
    '/v1/chat/completions' => $chat,
    '/v1/completions' => '{"model":"gpt-4o","prompt":"hi"}',
    '/v1/embeddings' => '{"model":"gpt-4o","input":"hi"}',
    '/v1/messages' => '{"model":"haiku","max_tokens":16,'
                      . '"messages":[{"role":"user","content":"hi"}]}',
);

# the endpoints, each with a generated id, sent and returned

my %ep = (
    '/v1/chat/completions' => 'chat.completions',
    '/v1/completions' => 'completions',
    '/v1/embeddings' => 'embeddings',
    '/v1/messages' => 'messages',
);

for my $path (sort keys %ep) {
    my $r = call($path, 'k_alice', $body{$path});
    is($r->{status}, 200, "$path: 200");

    my @id = hdr($r, 'X-Request-Id');
    is(scalar @id, 1, "$path: one X-Request-Id, the provider's kept back");
    like($id[0] // '', qr/^[0-9a-f]{32}$/, "$path: an id is made");
    is($r->{mock}{headers}{'x-request-id'}, $id[0],
       "$path: the provider gets it");
}

my $models = call('/v1/models', 'k_alice');
is($models->{status}, 200, '/v1/models: 200');
like(hdr($models, 'X-Request-Id') // '', qr/^[0-9a-f]{32}$/,
     '/v1/models: an id');

my @log = access_log();

for my $path (sort keys %ep, '/v1/models') {
    my ($l) = grep { $_->{uri} eq $path } @log;
    is($l->{endpoint}, $ep{$path} // 'models', "\$aigw_endpoint of $path");
    like($l->{request_id}, qr/^[0-9a-f]{32}$/, "\$aigw_request_id of $path");
}

my ($l) = grep { $_->{uri} eq '/v1/chat/completions' } @log;
like($l->{provider_request_id}, qr/^req_[0-9a-f]{32}$/,
     "\$aigw_provider_request_id: OpenAI's x-request-id");
($l) = grep { $_->{uri} eq '/v1/messages' } @log;
like($l->{provider_request_id}, qr/^req_[0-9A-Za-z]{24}$/,
     "\$aigw_provider_request_id: Anthropic's request-id");
is(hdr($models, 'request-id'), undef, 'no provider id without a provider');

# the client's id: passed when sane, replaced when not

my $sane = 'trace-01.abc:DEF_9';
my $r = call('/v1/chat/completions', 'k_bob', $chat,
             'X-Request-Id' => $sane);
is(hdr($r, 'X-Request-Id'), $sane, 'a sane id comes back');
is($r->{mock}{headers}{'x-request-id'}, $sane, 'and reaches the provider');

$r = call('/v1/chat/completions', 'k_bob', $chat,
          'X-Request-Id' => 'x' x 128);
is(hdr($r, 'X-Request-Id'), 'x' x 128, '128 bytes are sane');

for my $bad ('x' x 129, 'a<b>', 'a"b', 'a/b', 'caf%C3%A9 ok') {
    $r = call('/v1/chat/completions', 'k_bob', $chat,
              'X-Request-Id' => $bad);
    my $id = hdr($r, 'X-Request-Id') // '';
    like($id, qr/^[0-9a-f]{32}$/,
         'an id that is not sane is replaced: ' . substr($bad, 0, 12));
    is($r->{mock}{headers}{'x-request-id'}, $id, 'at the provider too');
}

# errors: the id on a 401, a 429 and a 502, and in their error log lines

$r = call('/v1/chat/completions', undef, $chat, 'X-Request-Id' => 'e-401');
is($r->{status}, 401, 'no key: 401');
is(hdr($r, 'X-Request-Id'), 'e-401', 'the id on a 401');

$r = call('/v1/chat/completions', 'k_lim', $chat);
is($r->{status}, 200, 'rpm=1: the first passes');
$r = call('/v1/chat/completions', 'k_lim', $chat, 'X-Request-Id' => 'e-429');
is($r->{status}, 429, 'rpm=1: the second is refused');
is(hdr($r, 'X-Request-Id'), 'e-429', 'the id on a 429');
is($r->{mock}, undef, 'the provider never saw it');

$r = call('/v1/chat/completions', 'k_carol',
          '{"model":"dead","messages":[{"role":"user","content":"hi"}]}',
          'X-Request-Id' => 'e-502');
is($r->{status}, 502, 'a provider down: 502');
is(hdr($r, 'X-Request-Id'), 'e-502', 'the id on a 502');

$r = call('/v1/chat/completions', 'k_bob', $chat,
          'X-Request-Id' => 'bad id');
my $made = hdr($r, 'X-Request-Id');

sleep 0.2;
my $err = $ngx->error_log;
like($err, qr/aigw: .*client: .*request_id: "e-401"/,
     'the 401 line names the request id');
like($err, qr/connect\(\) failed .*upstream: .*request_id: "e-502"/,
     "upstream's connect error names the request id");
like($err, qr/not a sane token.*request_id: "\Q$made\E"/,
     'the replacement is logged, with the id made');

# metrics: the endpoint and the extra labels

my $m = $ngx->request('GET', '/metrics')->{body};

for my $e (qw(chat.completions completions embeddings messages models)) {
    like($m, qr/^aigw_requests_total\{[^}]*endpoint="\Q$e\E"/m,
         "metrics: endpoint=\"$e\"");
}

like($m, qr/^aigw_requests_total\{tenant="acme",model="gpt-4o",provider="ok",endpoint="chat.completions",user="alice",team="red",cost_center="cc-1",status="200"\} 1$/m,
     'metrics: user, team and a metadata tag as labels, in order');
like($m, qr/^aigw_requests_total\{tenant="globex",model="dead",provider="down",endpoint="chat.completions",user="carol",team="",cost_center="",status="502"\} 1$/m,
     'metrics: a key without team or tag has them empty');
like($m, qr/^aigw_requests_total\{tenant="",model="",provider="",endpoint="chat.completions",user="",team="",cost_center="",status="401"\} 1$/m,
     'metrics: no key, no labels of it');

# the report: its sums equal the metrics

sub metric_sum {
    my ($re) = @_;
    my $sum = 0;
    $sum += $1 while $m =~ /^$re\{[^}]*\} (\S+)$/mg;
    return $sum;
}

sub report {
    my ($q) = @_;
    my $res = $ngx->request('GET', "/report$q");
    return ($res->{status}, eval { decode_json($res->{body}) }, $res);
}

$m = $ngx->request('GET', '/metrics')->{body};
my $requests = metric_sum('aigw_requests_total');
my ($in, $out) = (0, 0);
$in += $1 while $m =~ /^aigw_tokens_total\{[^}]*type="input"\} (\d+)$/mg;
$out += $1 while $m =~ /^aigw_tokens_total\{[^}]*type="output"\} (\d+)$/mg;
my $cost = metric_sum('aigw_cost_dollars_total');

my ($st, $rep, $raw) = report('');
is($st, 200, 'report: 200');
like(hdr($raw, 'Content-Type'), qr{^application/json}, 'report: JSON');
is($rep->{total}{requests}, $requests, 'report: requests as the metrics');
is($rep->{total}{tokens}{input}, $in, 'report: input tokens');
is($rep->{total}{tokens}{output}, $out, 'report: output tokens');
cmp_ok(abs($rep->{total}{cost} - $cost), '<', 1e-9, 'report: cost');
is(scalar @{ $rep->{groups} }, 1, 'report: no "by", one group');

for my $by ('tenant,model', 'endpoint', 'user', 'team,status',
            'cost_center', 'provider,endpoint,user')
{
    ($st, $rep) = report("?by=$by");
    is($st, 200, "report by $by");
    is_deeply($rep->{by}, [split /,/, $by], "report by $by: echoed");

    my %seen;
    my $sum = 0;
    for my $g (@{ $rep->{groups} }) {
        my $k = join "\0", map { $g->{labels}{$_} } split /,/, $by;
        $seen{$k}++;
        $sum += $g->{requests};
    }
    is($sum, $requests, "report by $by: groups add up to the metrics");
    ok(!grep({ $_ > 1 } values %seen), "report by $by: each group once");
}

($st, $rep) = report('?by=tenant');
my %t = map { $_->{labels}{tenant} => $_ } @{ $rep->{groups} };
is($t{acme}{requests}, metric_sum('aigw_requests_total(?=\{tenant="acme")'),
   'report: acme as in the metrics');
is($t{lim}{requests}, 2, 'report: lim made two requests');

($st, $rep) = report('?by=endpoint');
my %e = map { $_->{labels}{endpoint} => $_->{requests} } @{ $rep->{groups} };
is($e{messages}, 1, 'report: one request to messages');
is($e{models}, 1, 'report: one to models');

($st, $rep) = report('?by=user%2Cendpoint');
is($st, 200, 'report: an escaped comma');

for my $bad ('?by=nope', '?by=tenant,tenant', '?by=tenant,', '?by=le') {
    ($st, $rep) = report($bad);
    is($st, 400, "report $bad: 400");
    like($rep->{error}{message} // '', qr/Cannot group by/,
         "report $bad: a JSON error");
}

is($ngx->request('POST', '/report', {}, '{}')->{status}, 405,
   'report: GET only');

# the cap holds with user labels on: a second nginx, two series at most

my $cap = AigwNginx->new;
my ($cdir, $cport) = ($cap->dir, $cap->port);
$cap->write_file('conf/keys.json', $keys_json);
$cap->write_conf(<<"EOC");
load_module $module;
worker_processes 1;
error_log $cdir/logs/error.log info;
pid $cdir/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $cdir/body;
    aigw_keys keys.json;
    aigw_metrics_zone capped:1m max_series=2 labels=user;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model gpt-4o ok:gpt-4o;
    server {
        listen 127.0.0.1:$cport;
        location /v1/ {
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
        location = /report {
            aigw_report;
        }
    }
}
EOC

ok($cap->start, 'a capped nginx starts') or BAIL_OUT($cap->start_error);

for my $k (qw(k_alice k_bob k_carol k_carol)) {
    $cap->request('POST', '/v1/chat/completions',
                  { Authorization => "Bearer sk-$k" }, $chat);
}

my $cm = $cap->request('GET', '/metrics')->{body};
like($cm, qr/^aigw_metrics_series 2$/m, 'cap: two series');
like($cm, qr/^aigw_requests_total\{[^}]*user="alice",status="200"\} 1$/m,
     'cap: alice has hers');
like($cm, qr/^aigw_requests_total\{tenant="_overflow",model="_overflow",provider="_overflow",endpoint="_overflow",user="_overflow",status="0"\} 2$/m,
     'cap: carol, past it, counts as _overflow, user label too');
unlike($cm, qr/user="carol"/, 'cap: no series of carol');
like($cap->error_log, qr/metrics series are capped at 2/, 'cap: warned');

($st, $rep) = do {
    my $res = $cap->request('GET', '/report?by=user');
    ($res->{status}, eval { decode_json($res->{body}) });
};
my %u = map { $_->{labels}{user} => $_->{requests} } @{ $rep->{groups} };
is_deeply(\%u, { alice => 1, bob => 1, _overflow => 2 },
          'cap: the report has the overflow too');
is($cap->request('GET', '/report?by=team')->{status}, 400,
   'cap: no team label, no grouping by team');

# labels= is checked, and may not change across a reload

sub nginx_t {
    my ($labels) = @_;
    my $t = AigwNginx->new;
    my $td = $t->dir;
    $t->write_conf(<<"EOC");
load_module $module;
error_log $td/logs/error.log;
pid $td/logs/nginx.pid;
events { }
http {
    aigw_metrics_zone z:1m labels=$labels;
    aigw_provider ok http://127.0.0.1:$mock/v1;
}
EOC
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $o = `$nginx -p $td/ -c $td/conf/nginx.conf -t 2>&1`;
    return ($? == 0, $o);
}

for my $bad ('status', 'meta:1x', 'meta:', 'user,user', 'foo', 'meta:le',
             'user,team,meta:a,meta:b,meta:c')
{
    my ($ok, $o) = nginx_t($bad);
    ok(!$ok, "labels=$bad is refused") or diag $o;
}

my ($ok, $o) = nginx_t('team,meta:cost_center');
ok($ok, 'labels=team,meta:cost_center is fine') or diag $o;

my $conf = do {
    open my $f, '<', "$cdir/conf/nginx.conf" or die;
    local $/;
    <$f>;
};
(my $changed = $conf) =~ s/labels=user/labels=team/;
$cap->write_conf($changed);
$cap->signal('HUP');
sleep 1;
like($cap->error_log, qr/has labels "team" while previously it had "user"/,
     'a reload that changes the labels is refused');
like($cap->request('GET', '/metrics')->{body}, qr/user="alice"/,
     'and the old configuration goes on');

done_testing();
