# The Responses API's stored responses: a response is read, deleted,
# cancelled and its input listed at the provider that created it, and a
# conversation (previous_response_id) goes on there; only its tenant may
# ask; the zone is shared by the workers and kept across a reload.
# Plain Test::More: responses made by one request are asked for by the
# next, through two workers and a reload.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

$ENV{AIGW_TEST_KEY} = 'sk-provider-secret';

$ngx->write_file('conf/keys.json',
                 sprintf('[{"id":"a","hash":"%s","tenant":"acme"},'
                         . '{"id":"b","hash":"%s","tenant":"globex"}]',
                         sha256_hex('sk-acme-responses'),
                         sha256_hex('sk-globex-responses')));

sub write_conf {
    my ($zone, $fallback) = @_;
    $zone = $zone ? "aigw_responses_zone responses:1m ttl=1h;" : '';
    $fallback = $fallback ? 'aigw_responses_fallback on;' : '';
    $ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
env AIGW_TEST_KEY;
events { worker_connections 64; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/body;
    aigw_keys keys.json;
    $zone
    aigw_provider east http://127.0.0.1:$mock/east/v1 key_env=AIGW_TEST_KEY;
    aigw_provider west http://127.0.0.1:$mock/west/v1 key_env=AIGW_TEST_KEY;
    aigw_model east-mini east:gpt-4o-mini;
    aigw_model west-mini west:gpt-4o-mini;
    aigw_route both east-mini west-mini;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            $fallback
            aigw_pass;
        }
    }
}
EOC
}

sub call {
    my ($method, $path, $key, $body) = @_;
    return $ngx->request($method, $path,
                         { Authorization => "Bearer $key" }, $body);
}

sub create {
    my ($key, $model, $stream, $extra) = @_;
    my $res = call('POST', '/v1/responses', $key,
                   qq({"model":"$model","input":"hello there")
                   . ($stream ? ',"stream":true' : '')
                   . ($extra // '') . '}');
    my ($id) = $res->{body} =~ /"id":"(resp_[0-9a-f]+)"/;
    return ($res, $id);
}

sub last_path {
    my $last = mock_last();
    return $last ? $last->{path} : '';
}

write_conf(1, 0);
ok($ngx->start, 'nginx starts with two workers') or diag $ngx->start_error;

# one created in the west, JSON; one in the east, streamed

mock_reset();
my ($res, $west) = create('sk-acme-responses', 'west-mini', 0);
is($res->{status}, 200, 'a response is created in the west');
ok($west, 'it has an id') or diag $res->{body};

my $east;
($res, $east) = create('sk-acme-responses', 'both', 1);
is($res->{status}, 200, 'a streamed one in the east');
ok($east, 'its id is in response.created') or diag $res->{body};
like($res->{body}, qr/event: response\.completed/, 'the stream is whole');

# each request on its own connection: both workers answer some

for my $i (1 .. 4) {
    for my $c ([$west, 'west'], [$east, 'east']) {
        my ($id, $where) = @$c;
        mock_reset();
        $res = call('GET', "/v1/responses/$id", 'sk-acme-responses');
        is($res->{status}, 200, "GET $where ($i)");
        is(last_path(), "/$where/v1/responses/$id",
           "GET goes to the $where ($i)");
    }
}

mock_reset();
$res = call('GET', "/v1/responses/$west/input_items?limit=2&order=asc",
            'sk-acme-responses');
is($res->{status}, 200, 'input_items');
like($res->{body}, qr/"object":"list"/, 'input_items: a list');
is(last_path(), "/west/v1/responses/$west/input_items?limit=2&order=asc",
   'input_items: its query string goes along');

mock_reset();
$res = call('POST', "/v1/responses/$east/cancel", 'sk-acme-responses', '');
is($res->{status}, 200, 'cancel');
like($res->{body}, qr/"status":"cancelled"/, 'cancel: cancelled');
is(last_path(), "/east/v1/responses/$east/cancel", 'cancel: in the east');
is(mock_last()->{method}, 'POST', 'cancel: a POST');

mock_reset();
$res = call('DELETE', "/v1/responses/$west", 'sk-acme-responses');
is($res->{status}, 200, 'delete');
like($res->{body}, qr/"deleted":true/, 'delete: deleted');
is(mock_last()->{method}, 'DELETE', 'delete: a DELETE, in the west');

# what is not allowed, unknown or another tenant's

$res = call('POST', "/v1/responses/$west", 'sk-acme-responses', '{}');
is($res->{status}, 405, 'POST on a stored response: 405');
like($res->{body}, qr/"code":"method_not_allowed"/, '405 in OpenAI words');

mock_reset();
$res = call('GET', '/v1/responses/resp_0123456789abcdef', 'sk-acme-responses');
is($res->{status}, 404, 'an unknown id: 404');
like($res->{body},
     qr/^\{"error":\{"message":"Response with id 'resp_0123456789abcdef' not found\.","type":"invalid_request_error","param":null,"code":"response_not_found"\}\}$/,
     'in OpenAI words');
is(mock_last(), undef, 'no provider was asked');

mock_reset();
$res = call('GET', "/v1/responses/$east", 'sk-globex-responses');
is($res->{status}, 404, "another tenant's response: 404");
is(mock_last(), undef, 'no provider was asked for it');
like($ngx->error_log, qr/aigw: response "\Q$east\E" of another tenant/,
     'and the error log says so');

$res = call('GET', "/v1/responses/$east", 'sk-wrong');
is($res->{status}, 401, 'no key: 401');

# a conversation goes on where it is

mock_reset();
($res) = create('sk-acme-responses', 'both', 0,
                qq(,"previous_response_id":"$west"));
is($res->{status}, 200, 'previous_response_id in the west, route both');
like(last_path(), qr{^/west/}, 'it goes to the west, not the first east');

($res) = create('sk-acme-responses', 'east-mini', 0,
                qq(,"previous_response_id":"$west"));
is($res->{status}, 400, 'a model elsewhere: 400');
like($res->{body}, qr/"code":"previous_response_elsewhere"/,
     'previous_response_elsewhere');

mock_reset();
($res) = create('sk-acme-responses', 'east-mini', 0,
                ',"previous_response_id":"resp_unknown"');
is($res->{status}, 200, 'an unknown previous response: the provider says');
like(last_path(), qr{^/east/}, 'to the model asked for');

# a reload keeps the zone; fallback allowed

write_conf(1, 1);
my $old = $ngx->workers;
$ngx->signal('HUP');
ok($ngx->reloaded($old, 30), 'the new workers took over');

for my $c ([$west, 'west'], [$east, 'east']) {
    my ($id, $where) = @$c;
    mock_reset();
    $res = call('GET', "/v1/responses/$id", 'sk-acme-responses');
    is($res->{status}, 200, "after the reload: GET $where");
    is(last_path(), "/$where/v1/responses/$id", "still the $where");
}

mock_reset();
($res) = create('sk-acme-responses', 'east-mini', 0,
                qq(,"previous_response_id":"$west"));
is($res->{status}, 200, 'with aigw_responses_fallback: not refused');
like(last_path(), qr{^/east/}, 'the other provider is tried');

# without a zone: two providers, nothing known

write_conf(0, 0);
$old = $ngx->workers;
$ngx->signal('HUP');
ok($ngx->reloaded($old, 30), 'reloaded without a zone');

$res = call('GET', "/v1/responses/$west", 'sk-acme-responses');
is($res->{status}, 404, 'without a zone, two providers: 404');
like($ngx->error_log, qr/no aigw_responses_zone, several providers/,
     'the error log says why');

open my $a, '<', "$dir/logs/access.log" or die;
my @lines = <$a>;
ok(!grep(/sk-acme|sk-provider/, @lines), 'no key in the access log');

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

done_testing();
