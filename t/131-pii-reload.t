# The PII counters outlive "nginx -s reload", custom patterns found again
# by name when the new configuration defines them in another order or
# adds some.  Plain Test::More: it needs a master process.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Time::HiRes qw(sleep);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

sub conf {
    my ($patterns) = @_;
    $ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 1;
pcre_jit on;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model m ok:gpt-4o;
$patterns
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pii redact;
            aigw_pii log ticket;
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC
}

sub send_text {
    my ($text) = @_;
    return $ngx->request('POST', '/v1/chat/completions', {},
                         '{"model":"m","messages":[{"role":"user",'
                         . "\"content\":\"$text\"}]}")->{status};
}

sub counter {
    my ($detector, $action) = @_;
    my $m = $ngx->request('GET', '/metrics', {}, undef)->{body};
    return $m =~ /^aigw_pii_findings_total\{detector="$detector",action="$action"\} (\d+)$/m
        ? $1 : undef;
}

conf('    aigw_pii_pattern employee "EMP-[0-9]{6}";'
     . "\n    aigw_pii_pattern ticket \"TCK-[0-9]{4}\";");

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

is(send_text('a@x.io EMP-123456 TCK-1234 TCK-5678'), 200, 'a request');
is(counter('email', 'redact'), 1, 'email counted');
is(counter('employee', 'redact'), 1, 'a pattern counted');
is(counter('ticket', 'log'), 2, 'another, logged');

# the patterns in another order, one more

conf('    aigw_pii_pattern project "PRJ-[A-Z]{3}";'
     . "\n    aigw_pii_pattern ticket \"TCK-[0-9]{4}\";"
     . "\n    aigw_pii_pattern employee \"EMP-[0-9]{6}\";");

my $old = $ngx->workers;
$ngx->signal('HUP');
ok($ngx->reloaded($old, 30), 'the new workers took over')
    or diag explain $ngx->workers;

is(send_text('b@y.io EMP-654321 PRJ-ABC TCK-0001'), 200,
   'a request after the reload');
is(counter('email', 'redact'), 2, 'email: the counter went on');
is(counter('employee', 'redact'), 2, 'a pattern moved: its counter went on');
is(counter('ticket', 'log'), 3, 'the other: its counter went on');
is(counter('project', 'redact'), 1, 'a new pattern counted');

$ngx->stop;

unlike($ngx->error_log, qr/\[(?:alert|emerg|crit)\]/, 'no alert in the log');

done_testing;
