# The moderation hook: the prompt's texts to a moderation service (the
# mock's /v1/moderations, which flags an input holding "mod-<category>")
# through an internal location, in a subrequest, before the provider
# and quota.  Flagged: 400 in the client's format; the service failing
# or slow: 503 (aigw_moderation_fail closed) or passed (open).

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

$ngx->write_conf(<<"EOC");
load_module $module;
master_process off;
daemon off;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    log_format guard '\$uri \$status guard=\$aigw_guard';
    access_log $dir/logs/access.log guard;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        aigw_moderation /_moderation;
        location /v1/ {
            aigw_pass;
        }
        location /cat/v1/ {
            aigw_moderation_categories violence self-harm;
            aigw_pass;
        }
        location /down/v1/ {
            aigw_moderation /_moddown;
            aigw_pass;
        }
        location /open/v1/ {
            aigw_moderation /_moddown;
            aigw_moderation_fail open;
            aigw_pass;
        }
        location /slow/v1/ {
            aigw_moderation /_modslow;
            aigw_pass;
        }
        location /pii/v1/ {
            aigw_pii redact;
            aigw_pass;
        }
        location /off/v1/ {
            aigw_moderation off;
            aigw_pass;
        }
        location = /_moderation {
            internal;
            proxy_pass http://127.0.0.1:$mock/v1/moderations;
            proxy_pass_request_headers off;
            proxy_set_header Content-Type application/json;
            proxy_set_header Authorization "Bearer mod-service-key";
        }
        location = /_moddown {
            internal;
            proxy_pass http://127.0.0.1:$mock/fault/status=500/v1/moderations;
            proxy_pass_request_headers off;
        }
        location = /_modslow {
            internal;
            proxy_pass http://127.0.0.1:$mock/fault/delay=3000/v1/moderations;
            proxy_pass_request_headers off;
            proxy_read_timeout 300ms;
        }
        location = /metrics {
            aigw_metrics;
        }
        location /_mock/ {
            proxy_pass http://127.0.0.1:$mock;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub chat {
    my ($content) = @_;
    return '{"model":"gpt-4o","messages":[{"role":"system","content":'
        . '"be kind"},{"role":"user","content":"' . $content . '"}]}';
}

sub post {
    my ($path, $body, $h) = @_;
    my $res = $ngx->request('POST', $path, $h // {}, $body);
    $res->{json} = eval { JSON::PP->new->decode($res->{body}) } // {};
    return $res;
}

sub last_mock {
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    return eval { JSON::PP->new->decode($last->{body}) } // {};
}

{
    my $res = post('/v1/chat/completions', chat('a kind question'));
    is($res->{status}, 200, 'not flagged: 200');

    $res = post('/v1/chat/completions', chat('mod-violence now'));
    is($res->{status}, 400, 'flagged: 400');
    is($res->{json}{error}{code}, 'guard_refused', 'flagged: the code');
    like($res->{json}{error}{message} // '', qr/moderation policy\.$/,
         'flagged: the reason');
    my $m = last_mock();
    like($m->{path} // '', qr{/v1/moderations$},
         'the provider never got it: the last call was the moderation');
    is($m->{body}, '{"input":["be kind","mod-violence now"]}',
       'the moderation got every text, as an input array');
    unlike(JSON::PP->new->encode($m->{headers} // {}), qr/Bearer (?!mod-)/,
           "the client's key did not go to the moderation service");

    $res = post('/v1/messages', '{"model":"claude-3-5-haiku","max_tokens":'
                . '8,"system":"mod-hate","messages":[{"role":"user",'
                . '"content":"hi"}]}', { 'anthropic-version' => '2023-06-01' });
    is($res->{status}, 400, 'Anthropic, flagged: 400');
    is($res->{json}{type}, 'error', 'Anthropic: its error shape');
}

# categories

{
    my $res = post('/cat/v1/chat/completions', chat('mod-hate here'));
    is($res->{status}, 200, 'a category not listed: passes');
    $res = post('/cat/v1/chat/completions', chat('mod-self-harm here'));
    is($res->{status}, 400, 'a listed category: 400');
    like($res->{json}{error}{message} // '', qr/\(self-harm\)/,
         'a listed category: named');
}

# the service failing or slow

{
    my $res = post('/down/v1/chat/completions', chat('hello'));
    is($res->{status}, 503, 'service failing, fail closed: 503');
    is($res->{json}{error}{code}, 'moderation_unavailable', 'its code');

    $res = post('/open/v1/chat/completions', chat('hello'));
    is($res->{status}, 200, 'service failing, fail open: 200');

    my $t0 = time;
    $res = post('/slow/v1/chat/completions', chat('hello'));
    is($res->{status}, 503, 'service too slow: 503');
    cmp_ok(time - $t0, '<', 2.5, 'at the location\'s proxy_read_timeout');

    $res = post('/off/v1/chat/completions', chat('mod-violence'));
    is($res->{status}, 200, 'aigw_moderation off: not asked');
}

# PII first: the moderation service gets the placeholders

{
    my $res = post('/pii/v1/chat/completions',
                   chat('mod-violence bob@example.com'));
    is($res->{status}, 400, 'PII and moderation: refused');
    is(last_mock()->{body},
       '{"input":["be kind","mod-violence [EMAIL_1]"]}',
       'the moderation got the redacted text');
}

{
    my $log = do {
        open my $fh, '<', "$dir/logs/access.log" or die;
        local $/;
        <$fh>;
    };
    like($log, qr{^/v1/chat/completions 400 guard=moderation$}m,
         '$aigw_guard: moderation');
    like($log, qr{^/cat/v1/chat/completions 400 guard=moderation:self-harm$}m,
         '$aigw_guard: the category');
    like($log, qr{^/down/v1/chat/completions 503 guard=moderation:unavailable$}m,
         '$aigw_guard: unavailable');
    like($ngx->error_log, qr/aigw: moderation failed \(status 500\)/,
         'error log: the failure');
    my $m = $ngx->request('GET', '/metrics', {}, undef)->{body};
    like($m, qr/^aigw_guard_refusals_total\{rule="moderation"\} [1-9]\d*$/m,
         'metrics: moderation');
}

$ngx->stop;

done_testing;
