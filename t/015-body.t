# The provider gets the client's bytes: only the spans the gateway edits
# (the model's name, stream_options, the caller as user) differ, so that
# numbers, escapes, key order, unknown fields and signatures arrive as
# sent.  A body with a top-level key twice is refused.  Plain Test::More:
# each case compares the exact bytes the mock received.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;

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
    access_log off;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model gpt ok:gpt-4o;
    aigw_model emb ok:text-embedding-3-small;
    aigw_model haiku claude:claude-3-5-haiku;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location /t/v1/ {
            aigw_tenant acme;
            aigw_tenant_user on;
            aigw_pass;
        }
        location /_mock/ {
            proxy_pass http://127.0.0.1:$mock;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

# what the provider got for a body sent to path
sub provider_got {
    my ($path, $body) = @_;
    my $res = $ngx->request('POST', $path, {}, $body);
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    return ($res, JSON::PP->new->decode($last->{body})->{body});
}

sub forwards {
    my ($name, $path, $body, $want) = @_;
    my ($res, $got) = provider_got($path, $body);
    is($res->{status}, 200, "$name: 200");
    is($got, $want, "$name: the provider's bytes");
}

my $odd = '{"model":"gpt-4o", "seed":12345678901234567890,'
    . '"temperature":0.1000,"top_p":1e400,"n":1E+0,'
    . '"messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00 \"q\"'
    . ' \/ tab\t"}],"zz_unknown":{"b":[1,2,{"a":null}]},"aa":true}';

forwards('numbers, escapes, order and unknown fields', '/v1/chat/completions',
         $odd, $odd);

(my $alias = $odd) =~ s/"model":"gpt-4o"/"model":"gpt"/;
forwards('an alias: only the model\'s name changes', '/v1/chat/completions',
         $alias, $odd);

forwards('a name with an escape is the model it spells',
         '/v1/chat/completions',
         '{"model":"gp\u0074","messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}');

# streams ask for usage where the client did not

forwards('stream without stream_options', '/v1/chat/completions',
         '{ "model":"gpt-4o", "stream":true, "messages":[{"role":"user","content":"x"}] }',
         '{ "model":"gpt-4o", "stream":true, "messages":[{"role":"user","content":"x"}] '
         . ',"stream_options":{"include_usage":true}}');

forwards('stream_options empty', '/v1/chat/completions',
         '{"model":"gpt-4o","stream":true,"stream_options":{ },'
         . '"messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","stream":true,"stream_options":{ '
         . '"include_usage":true},"messages":[{"role":"user","content":"x"}]}');

forwards('include_usage false', '/v1/chat/completions',
         '{"model":"gpt-4o","stream":true,"stream_options":'
         . '{"include_usage":false,"x":1},"messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","stream":true,"stream_options":'
         . '{"include_usage":true,"x":1},"messages":[{"role":"user","content":"x"}]}');

forwards('stream_options null', '/v1/chat/completions',
         '{"model":"gpt-4o","stream":true,"stream_options":null,'
         . '"messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","stream":true,"stream_options":'
         . '{"include_usage":true},"messages":[{"role":"user","content":"x"}]}');

forwards('include_usage the client asked for', '/v1/chat/completions',
         '{"model":"gpt-4o","stream":true,"stream_options":'
         . '{"other":[],"include_usage":true},"messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","stream":true,"stream_options":'
         . '{"other":[],"include_usage":true},"messages":[{"role":"user","content":"x"}]}');

# aigw_tenant_user: the caller as the format's user

forwards('user added', '/t/v1/chat/completions',
         '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"user":"acme"}');

forwards('user replaced', '/t/v1/chat/completions',
         '{"model":"gpt-4o","user":"mallory","messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","user":"acme","messages":[{"role":"user","content":"x"}]}');

forwards('a key in other case is another key', '/t/v1/chat/completions',
         '{"model":"gpt-4o","USER":"x","messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","USER":"x","messages":[{"role":"user","content":"x"}],"user":"acme"}');

my $msg = '"max_tokens":16,"messages":[{"role":"user","content":"hi"}]';

forwards('metadata added', '/t/v1/messages',
         qq'{"model":"claude-3-5-haiku",$msg}',
         qq'{"model":"claude-3-5-haiku",$msg,'
         . '"metadata":{"user_id":"acme"}}');

forwards('user_id added to metadata', '/t/v1/messages',
         qq'{"model":"claude-3-5-haiku","metadata":{"x":1},$msg}',
         qq'{"model":"claude-3-5-haiku","metadata":{"x":1,'
         . qq'"user_id":"acme"},$msg}');

forwards('user_id replaced', '/t/v1/messages',
         qq'{"model":"claude-3-5-haiku","metadata":{"user_id":"m"},$msg}',
         qq'{"model":"claude-3-5-haiku","metadata":{"user_id":"acme"},'
         . qq'$msg}');

forwards('metadata that is not an object', '/t/v1/messages',
         qq'{"model":"claude-3-5-haiku","metadata":null,$msg}',
         qq'{"model":"claude-3-5-haiku","metadata":{"user_id":"acme"},'
         . qq'$msg}');

my $thinking = '{"model":"claude-3-5-haiku","max_tokens":16,'
    . '"messages":[{"role":"user","content":"hi"},{"role":"assistant",'
    . '"content":[{"type":"thinking","thinking":"Let me see\u2026",'
    . '"signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxDIo+\/9i=="},'
    . '{"type":"text","text":"ok","cache_control":{"type":"ephemeral"}}]},'
    . '{"role":"user","content":"more"}]}';

forwards('thinking, signature and cache_control byte for byte',
         '/v1/messages', $thinking, $thinking);

# a key twice: the first would be checked and metered, the last served

sub refused {
    my ($name, $path, $body) = @_;
    my $res = $ngx->request('POST', $path, {}, $body);
    is($res->{status}, 400, "$name: 400");
    like($res->{body}, qr/"code":"duplicate_key"/, "$name: duplicate_key");
}

refused('model twice', '/v1/chat/completions',
        '{"model":"gpt","messages":[{"role":"user","content":"x"}],"model":"gpt-4o"}');
refused('model twice, one escaped', '/v1/chat/completions',
        '{"mod\u0065l":"gpt","messages":[{"role":"user","content":"x"}],"model":"gpt-4o"}');
refused('stream twice', '/v1/embeddings',
        '{"model":"emb","input":"x","stream":false,"stream":true}');
refused('user twice', '/v1/chat/completions',
        '{"model":"gpt","user":"a","messages":[{"role":"user","content":"x"}],"user":"b"}');

my $res = $ngx->request('POST', '/v1/messages', {},
                        qq'{"model":"haiku",$msg,"model":"x"}');
like($res->{body}, qr/^\{"type":"error","error":\{"type":"invalid_request_error"/,
     'a key twice, in Anthropic\'s shape');

forwards('"model\u0000" is not "model"', '/v1/chat/completions',
         '{"model":"gpt-4o","model\u0000":"x","messages":[{"role":"user","content":"x"}]}',
         '{"model":"gpt-4o","model\u0000":"x","messages":[{"role":"user","content":"x"}]}');

open my $log, '<', "$dir/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
like($text, qr/request body has a top-level key twice/,
     'the error log says why');
unlike($text, qr/\[(alert|crit|emerg)\]/, 'nothing worse in the log');

done_testing;
