# Metrics: after a known sequence of requests through two workers, the
# Prometheus endpoint shows exactly what was done; the output passes
# "promtool check metrics"; the counters survive "nginx -s reload"; past
# max_series new series count as "_overflow".  Plain Test::More: it needs a
# master process, two workers and a reload.

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

$ngx->write_file('conf/keys.json',
                 sprintf('[{"id":"a","hash":"%s","tenant":"acme"},'
                         . '{"id":"b","hash":"%s","tenant":"globex"}]',
                         sha256_hex('sk-acme'), sha256_hex('sk-globex')));

sub write_conf {
    my ($max) = @_;
    $ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
env AIGW_TEST_KEY;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    aigw_keys keys.json;
    aigw_metrics_zone aigw:1m max_series=$max;
    aigw_provider ok http://127.0.0.1:$mock/v1 key_env=AIGW_TEST_KEY;
    aigw_provider down http://127.0.0.1:1/v1 key_env=AIGW_TEST_KEY;
    aigw_provider s500 http://127.0.0.1:$mock/fault/status=500/v1
                  key_env=AIGW_TEST_KEY;
    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00;
    aigw_model "we\\"ird" ok:gpt-4o;
    aigw_model dead down:gpt-4o;
    aigw_model bad s500:gpt-4o;
    aigw_route fallback dead gpt-4o;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC
}

write_conf(100);

$ENV{AIGW_TEST_KEY} = 'sk-provider';

ok($ngx->start, 'nginx starts with two workers') or diag $ngx->start_error;

sub request {
    my ($method, $path, $key, $body) = @_;
    return $ngx->request($method, $path,
                         $key ? { Authorization => "Bearer $key" } : {},
                         $body)->{body};
}

sub chat {
    my ($key, $model, $stream) = @_;
    return request('POST', '/v1/chat/completions', $key,
                   qq({"model":"$model","stream":)
                   . ($stream ? 'true' : 'false')
                   . qq(,"messages":[{"role":"user","content":"hello there"}]}));
}

sub metrics {
    return request('GET', '/metrics');
}

# The metrics once every pattern shows (the log phase, which counts, runs
# as the answer ends, and may come after the client has it): polled with
# a bound, so that a busy machine is no reason to fail.  What does not
# show in time is then reported by the checks themselves.
sub metrics_with {
    my (@re) = @_;
    my $deadline = time + 10;
    my $m;
    while (1) {
        $m = metrics();
        last if !grep { $m !~ $_ } @re;
        last if time > $deadline;
        sleep 0.05;
    }
    return $m;
}

# the sequence: on separate connections, so both workers take part
chat('sk-acme', 'gpt-4o') for 1 .. 3;
chat('sk-acme', 'gpt-4o', 1) for 1 .. 2;
chat('sk-globex', 'fallback');
chat('sk-globex', 'bad');
chat('sk-nobody', 'gpt-4o');
chat('sk-acme', 'we\\"ird');

my $l = 'tenant="acme",model="gpt-4o",provider="ok",endpoint="chat.completions",status="200"';
my $g = 'tenant="globex",model="gpt-4o",provider="ok",endpoint="chat.completions",status="200"';

my $m = metrics_with(
    qr/^aigw_requests_total\{\Q$l\E\} 5$/m,
    qr/^aigw_requests_total\{\Q$g\E\} 1$/m,
    qr/^aigw_errors_total\{[^}]*model="bad"[^}]*\} 1$/m,
    qr/^aigw_errors_total\{[^}]*status="401"[^}]*\} 1$/m,
    qr/^aigw_requests_total\{[^}]*model="we\\"ird"[^}]*\} 1$/m);

like($m, qr/^aigw_requests_total\{\Q$l\E\} 5$/m,
     'five requests of acme to gpt-4o');
like($m, qr/^aigw_tokens_total\{\Q$l\E,type="input"\} 15$/m,
     '15 input tokens');
like($m, qr/^aigw_tokens_total\{\Q$l\E,type="output"\} 35$/m,
     '35 output tokens, streams included');
like($m, qr/^aigw_cost_dollars_total\{\Q$l\E\} 0\.000390$/m,
     'five times 78 micro-dollars');

like($m, qr/^aigw_requests_total\{\Q$g\E\} 1$/m,
     'the fallback request is counted where it was served');
like($m, qr/^aigw_fallbacks_total\{\Q$g\E\} 1$/m, 'with one fallback');

like($m, qr/^aigw_errors_total\{tenant="globex",model="bad",provider="s500",endpoint="chat.completions",status="500",kind="provider_5xx"\} 1$/m,
     'a provider 500 is an error of its kind');
like($m, qr/^aigw_errors_total\{tenant="",model="",provider="",endpoint="chat.completions",status="401",kind="auth"\} 1$/m,
     'an unknown key is an auth error');
like($m, qr/^aigw_requests_total\{tenant="acme",model="we\\"ird",provider="ok",endpoint="chat.completions",status="200"\} 1$/m,
     'label values are escaped');

like($m, qr/^aigw_request_duration_seconds_count\{\Q$l\E\} 5$/m,
     'a latency histogram');
like($m, qr/^aigw_request_duration_seconds_bucket\{\Q$l\E,le="\+Inf"\} 5$/m,
     'with its +Inf bucket');
like($m, qr/^aigw_ttft_seconds_count\{\Q$l\E\} 5$/m, 'a TTFT histogram');
like($m, qr/^# TYPE aigw_requests_total counter$/m, 'TYPE lines');

{
    my ($promtool) = grep { -x } map { "$_/promtool" } split /:/, $ENV{PATH};
    $promtool //= 'promtool (Debian package prometheus) is missing';

    open my $f, '>', "$dir/metrics.txt" or die;
    print $f $m;
    close $f;

    my $check = `$promtool check metrics < $dir/metrics.txt 2>&1`;
    is($?, 0, 'promtool check metrics passes') or diag $check;
}

# a reload keeps the counters, and a lower max_series applies
write_conf(8);

my $old = $ngx->workers;
$ngx->signal('HUP');
ok($ngx->reloaded($old, 30), 'the new workers took over');

$m = metrics();
like($m, qr/^aigw_requests_total\{\Q$l\E\} 5$/m,
     'the counters survive a reload');

chat('sk-acme', 'gpt-4o');
$m = metrics_with(qr/^aigw_requests_total\{\Q$l\E\} 6$/m);
like($m, qr/^aigw_requests_total\{\Q$l\E\} 6$/m, 'and go on counting');

# past the cap: new series are counted as _overflow
for my $i (1 .. 5) {
    request('POST', '/v1/chat/completions', 'sk-acme',
            qq({"model":"unknown-$i","messages":[]}));
}
$m = metrics_with(qr/^aigw_requests_total\{tenant="_overflow"/m,
                  qr/^aigw_metrics_series 8$/m);

like($m, qr/^aigw_requests_total\{tenant="_overflow",model="_overflow",provider="_overflow",endpoint="_overflow",status="0"\} \d+$/m,
     'new series past max_series are counted as _overflow');
like($m, qr/^aigw_metrics_series 8$/m, 'the number of series stays at the cap');

my $log;
for my $wait (0 .. 100) {
    $log = $ngx->error_log;
    last if $log =~ /metrics series are capped/;
    sleep 0.05;
}
like($log, qr/aigw: metrics series are capped at 8/, 'the cap is logged once');
unlike($log, qr/\[(alert|crit)\]/, 'no alerts');

done_testing();
