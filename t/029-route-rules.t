# Rules that choose a route's first candidate by the request: the size of
# the prompt and max_tokens from the body scan, a header, the key's team.
# The first rule that matches puts its model first, the others stay its
# fallbacks; no rule, the route's own order (or balance).  Misconfigured
# rules are refused by "nginx -t".

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use Digest::SHA ();
use Test::More;

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

# two keys: a team, and a tag of the key's metadata

my %sha = map { $_ => Digest::SHA::sha256_hex($_) }
    qw(sk-aigw-rules-research sk-aigw-rules-free);

$ngx->write_file('keys.json', <<"EOK");
{"keys": [
  {"id": "k_research", "hash": "$sha{'sk-aigw-rules-research'}",
   "tenant": "acme", "team": "research"},
  {"id": "k_free", "hash": "$sha{'sk-aigw-rules-free'}",
   "tenant": "acme", "team": "free", "metadata": {"tier": "frontier"}}
]}
EOK

my $http = <<"EOC";
    aigw_provider cheap http://127.0.0.1:$mock/v1;
    aigw_provider frontier http://127.0.0.1:$mock/v1;
    aigw_provider down http://127.0.0.1:$mock/fault/status=503/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;

    aigw_model small cheap:gpt-4o-mini;
    aigw_model big frontier:gpt-4o;
    aigw_model broken down:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;

    aigw_route tiers small big;
    aigw_route_rule tiers prompt_bytes>300 big;
    aigw_route_rule tiers max_tokens>=4000 big;
    aigw_route_rule tiers \$http_x_tier=frontier big;
    aigw_route_rule tiers \$aigw_team=research big;

    aigw_route tagged small big;
    aigw_route_rule tagged \$aigw_meta_tier=frontier big;

    aigw_route rescue small broken;
    aigw_route_rule rescue \$http_x_tier=frontier broken;

    aigw_route weighted small weight=1000 big weight=1 balance=weight;
    aigw_route_rule weighted \$http_x_tier!=cheap big;

    aigw_route mixed haiku big;
    aigw_route_rule mixed prompt_bytes>=1 big;
EOC

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
$http
    aigw_keys $dir/keys.json;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_auth off;
            aigw_tenant t;
            aigw_pass;
            add_header X-Provider \$aigw_provider always;
            add_header X-Attempts \$aigw_attempts always;
        }
        location /keyed/ {
            aigw_pass;
            add_header X-Provider \$aigw_provider always;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub chat {
    my (%a) = @_;
    my $body = '{"model":"' . ($a{model} || 'tiers') . '",'
               . (defined $a{max} ? "\"max_tokens\":$a{max}," : '')
               . '"messages":[{"role":"user","content":"'
               . ($a{text} || 'hi') . '"}]}';
    my $res = $ngx->request('POST', $a{path} || '/v1/chat/completions',
                            { 'Content-Type' => 'application/json',
                              %{ $a{headers} || {} } }, $body);
    my ($p) = $res->{headers} =~ /^X-Provider: (\S+)/mi;
    my ($n) = $res->{headers} =~ /^X-Attempts: (\S+)/mi;
    return "$res->{status} " . ($p // '-')
           . (defined $n && $n ne '1' ? " attempts=$n" : '');
}

is(chat(), '200 cheap', 'a short prompt: the route\'s first model');
is(chat(text => 'x' x 400), '200 frontier', 'a long prompt: the big model');
is(chat(text => 'x' x 250), '200 cheap', 'not quite long enough');
is(chat(max => 4000), '200 frontier', 'max_tokens>=4000: the big model');
is(chat(max => 3999), '200 cheap', 'max_tokens below: the first');
is(chat(headers => { 'X-Tier' => 'frontier' }), '200 frontier',
   'a header chooses');
is(chat(headers => { 'X-Tier' => 'other' }), '200 cheap',
   'another value does not');

is(chat(path => '/keyed/chat/completions',
        headers => { Authorization => 'Bearer sk-aigw-rules-research' }),
   '200 frontier', 'the key\'s team chooses');
is(chat(path => '/keyed/chat/completions',
        headers => { Authorization => 'Bearer sk-aigw-rules-free' }),
   '200 cheap', 'another team does not');
is(chat(path => '/keyed/chat/completions', model => 'tagged',
        headers => { Authorization => 'Bearer sk-aigw-rules-free' }),
   '200 frontier', 'a tag of the key chooses');
is(chat(path => '/keyed/chat/completions', model => 'tagged',
        headers => { Authorization => 'Bearer sk-aigw-rules-research' }),
   '200 cheap', 'a key without the tag: the first');

is(chat(model => 'rescue', headers => { 'X-Tier' => 'frontier' }),
   '200 cheap attempts=2', 'the rule\'s model failing falls back to the rest');

is(chat(model => 'weighted'), '200 frontier',
   'a rule that matches wins over the weights');
is(chat(model => 'weighted', headers => { 'X-Tier' => 'cheap' }),
   '200 cheap', 'no rule: the weights');

# Anthropic's API on a route whose big model speaks OpenAI: translated
my $res = $ngx->request('POST', '/v1/messages',
    { 'Content-Type' => 'application/json' },
    '{"model":"mixed","max_tokens":10,"system":"s",'
    . '"messages":[{"role":"user","content":"hi"}]}');
like($res->{headers}, qr/^X-Provider: frontier/mi,
     'prompt_bytes from an Anthropic body');

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');

$ngx->stop;

# misconfigurations

sub nginx_t {
    my ($extra) = @_;
    $ngx->write_conf(<<"EOC");
load_module $module;
error_log $dir/logs/t.log;
pid $dir/logs/t.pid;
events { worker_connections 16; }
http {
$http
$extra
    server { listen 127.0.0.1:$port; location /v1/ { aigw_pass; } }
}
EOC
    my $out = `$nginx -t -p $dir -c conf/nginx.conf 2>&1`;
    return ($? ? 'fails' : 'passes') . ": $out";
}

like(nginx_t('aigw_route_rule nope prompt_bytes>1 big;'),
     qr/^fails: .*unknown aigw route "nope"/s, 'an unknown route');
like(nginx_t('aigw_route_rule tiers prompt_bytes>1 haiku;'),
     qr/^fails: .*"haiku" is not a model of aigw route "tiers"/s,
     'a model not of the route');
like(nginx_t('aigw_route_rule tiers tokens>1 big;'),
     qr/^fails: .*unknown "tokens" in rule "tokens>1"/s, 'an unknown name');
like(nginx_t('aigw_route_rule tiers prompt_bytes>big big;'),
     qr/^fails: .*invalid rule "prompt_bytes>big"/s, 'not a number');
like(nginx_t('aigw_route_rule tiers $http_x_tier>1 big;'),
     qr/^fails: .*invalid rule "\$http_x_tier>1"/s,
     'a variable is compared for equality only');
like(nginx_t('aigw_route_rule tiers prompt_bytes big;'),
     qr/^fails: .*invalid rule "prompt_bytes"/s, 'no operator');
like(nginx_t('aigw_route_rule tiers prompt_bytes!1 big;'),
     qr/^fails: .*invalid rule "prompt_bytes!1"/s, 'a lone "!"');
like(nginx_t('aigw_route_rule tiers prompt_bytes<=8000 small;'),
     qr/^passes/, 'a good rule passes');

done_testing();
